"""A bare word that is no context: an ssh host, with the contexts there are for the message."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from docker_d2d.app.contexts import resolve
from docker_d2d.app.options import GlobalOptions
from docker_d2d.errors import EndpointError


def test_bare_words_with_bad_ports_are_refused_too(tmp_path: Path) -> None:
    with pytest.raises(EndpointError, match="port 0 is not between"):
        resolve("host:0", GlobalOptions(), {"DOCKER_CONFIG": str(tmp_path)})


def _context(cfg: Path, name: str) -> None:
    d = cfg / "contexts/meta" / hashlib.sha256(name.encode()).hexdigest()
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"Name": name, "Endpoints": {"docker": {"Host": "unix:///x.sock"}}}))


def test_a_bare_word_that_is_no_context_carries_the_contexts_for_the_message(tmp_path: Path) -> None:
    _context(tmp_path, "prod")
    _context(tmp_path, "staging")
    env = {"DOCKER_CONFIG": str(tmp_path)}
    word = resolve("fra", GlobalOptions(), env)
    assert word.host == "fra" and word.contexts == ("default", "prod", "staging")
    # An explicit address is what the user meant: no contexts to suggest.
    assert resolve("ssh://fra", GlobalOptions(), env).contexts is None
