from __future__ import annotations

import pytest

from docker_d2d.errors import UsageError
from docker_d2d.formats.digests import chain_ids, human_size
from docker_d2d.model import RefKind, as_id_ref, could_be_id, familiar, parse_ref


@pytest.mark.parametrize(
    ("raw", "kind", "repository", "tag"),
    [
        ("myapp", RefKind.TAG, "myapp", "latest"),
        ("myapp:2", RefKind.TAG, "myapp", "2"),
        ("user/app:2", RefKind.TAG, "user/app", "2"),
        ("docker.io/library/busybox:1", RefKind.TAG, "busybox", "1"),
        ("docker.io/user/app", RefKind.TAG, "user/app", "latest"),
        ("127.0.0.1:5000/team/app:v1.2", RefKind.TAG, "127.0.0.1:5000/team/app", "v1.2"),
        ("localhost/app:1", RefKind.TAG, "localhost/app", "1"),
        ("app@sha256:" + "a" * 64, RefKind.DIGEST, "app", ""),
        ("sha256:" + "b" * 64, RefKind.ID, "", ""),
        ("c" * 64, RefKind.ID, "", ""),
    ],
)
def test_parse_ref(raw: str, kind: RefKind, repository: str, tag: str) -> None:
    ref = parse_ref(raw)
    assert (ref.kind, ref.repository, ref.tag) == (kind, repository, tag)


@pytest.mark.parametrize("raw", ["UPPER:1", "app:", "a b", "app@sha256:xyz", ""])
def test_parse_ref_rejects(raw: str) -> None:
    with pytest.raises(UsageError):
        parse_ref(raw)


def test_short_hex_may_be_an_id() -> None:
    ref = parse_ref("071c07b0df06")
    assert could_be_id(ref) and ref.tagged == "071c07b0df06:latest"
    assert as_id_ref(ref).tagged is None
    assert not could_be_id(parse_ref("myapp"))


def test_familiar() -> None:
    assert familiar("docker.io/library/x") == "x"
    assert familiar("docker.io/library/x/y") == "library/x/y"
    assert familiar("quay.io/x/y") == "quay.io/x/y"


def test_chain_ids_follow_the_spec() -> None:
    # Values read off Docker 20.10 for an image built here (layerdb directory names).
    diffs = [
        "sha256:84a058914a01adb466bc962286cdb09ceedd758b9bbc394ec63c84a1656c2379",
        "sha256:7153dc9a19e714710d7fc1e67f0c9e830adba7866645f0ce168dacb8932fc4ed",
    ]
    chains = chain_ids(diffs)
    assert chains[0] == diffs[0]
    import hashlib

    assert chains[1] == "sha256:" + hashlib.sha256(f"{diffs[0]} {diffs[1]}".encode()).hexdigest()


def test_human_size() -> None:
    assert human_size(999) == "999B"
    assert human_size(137_700_000) == "137.7MB"
