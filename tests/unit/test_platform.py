"""Platforms: parsing --platform, matching OCI descriptors."""

from __future__ import annotations

import pytest

from docker_d2d.errors import UsageError
from docker_d2d.model import Platform


@pytest.mark.parametrize(
    ("text", "platform"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("Linux/ARM/v7", Platform("linux", "arm", "v7")),
    ],
)
def test_platform_parse(text: str, platform: Platform) -> None:
    assert Platform.parse(text) == platform
    assert str(platform) == text.lower()


@pytest.mark.parametrize("text", ["linux", "linux/", "a/b/c/d", "/amd64"])
def test_platform_parse_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="os/arch"):
        Platform.parse(text)


def test_platform_matches_descriptors() -> None:
    arm64 = Platform("linux", "arm64")
    assert arm64.matches({"os": "linux", "architecture": "arm64", "variant": "v8"})
    assert Platform("linux", "arm64", "v8").matches({"os": "linux", "architecture": "arm64"})
    assert not arm64.matches({"os": "linux", "architecture": "amd64"})
    assert not Platform("linux", "arm", "v7").matches({"os": "linux", "architecture": "arm", "variant": "v6"})
