"""Checkpoints: the option's sizes, when they are on, the partial images' names."""

from __future__ import annotations

import pytest

from docker_d2d.errors import UsageError
from docker_d2d.model import ImageInfo
from docker_d2d.transfer.checkpoints import AUTO_EVERY, every, parse_checkpoint, partial_refs


@pytest.mark.parametrize(
    ("text", "value"),
    [("auto", "auto"), ("never", None), ("0", None), ("256MB", 256_000_000), ("1GiB", 1 << 30), ("64m", 64_000_000)],
)
def test_parse_checkpoint(text: str, value: object) -> None:
    assert parse_checkpoint(text) == value


@pytest.mark.parametrize("text", ["fast", "-1MB", "1.5.5G", ""])
def test_parse_checkpoint_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_checkpoint(text)


def test_auto_checkpoints_only_on_far_links() -> None:
    assert every("auto", far=False) is None
    assert every("auto", far=True) == AUTO_EVERY
    assert every(1000, far=False) == 1000


def test_partial_refs_found_by_source_id_in_either_naming() -> None:
    held = [
        ImageInfo("sha256:a", (), repo_tags=("docker-d2d-partial:0123456789ab-3", "other:1")),
        ImageInfo("sha256:b", (), repo_tags=("localhost/docker-d2d-partial:0123456789ab-4",)),
        ImageInfo("sha256:c", (), repo_tags=("docker-d2d-partial:ffffffffffff-2",)),
    ]
    assert partial_refs(held, ["sha256:0123456789abcdef"]) == {
        "docker-d2d-partial:0123456789ab-3": 3,
        "localhost/docker-d2d-partial:0123456789ab-4": 4,
    }
