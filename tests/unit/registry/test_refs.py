"""The registry a repo digest names."""

from __future__ import annotations

import pytest

from docker_d2d.registry.refs import split_repo_digest


@pytest.mark.parametrize(
    ("repo_digest", "expected"),
    [
        ("127.0.0.1:5000/team/app@sha256:" + "a" * 64, ("127.0.0.1:5000", "team/app", "sha256:" + "a" * 64)),
        (
            "docker.io/library/debian@sha256:" + "b" * 64,
            ("registry-1.docker.io", "library/debian", "sha256:" + "b" * 64),
        ),
        ("debian@sha256:" + "c" * 64, ("registry-1.docker.io", "library/debian", "sha256:" + "c" * 64)),
        ("user/app@sha256:" + "d" * 64, ("registry-1.docker.io", "user/app", "sha256:" + "d" * 64)),
        ("localhost/app@sha256:" + "e" * 64, ("localhost", "app", "sha256:" + "e" * 64)),
        ("sha256:" + "f" * 64, None),
    ],
)
def test_split_repo_digest(repo_digest: str, expected: tuple[str, str, str] | None) -> None:
    assert split_repo_digest(repo_digest) == expected
