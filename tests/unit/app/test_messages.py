"""What errors say (issue 16, item 12): one line each, made in app/messages.py."""

from __future__ import annotations

import io

import pytest

from docker_d2d.app.messages import endpoint_only, error_line, swapped, usage_line
from docker_d2d.errors import EngineError, NameNotFound


def test_a_name_without_a_tag_says_latest_was_looked_for() -> None:
    error = NameNotFound("fx/app:latest", tag_given=False, tags=["fx/app:2", "fx/app:3"], side="source", endpoint="e")
    assert error_line(error) == (
        "docker-d2d: source e: no such image: fx/app:latest (no tag given, so :latest was looked for); "
        "the source has fx/app:2, fx/app:3"
    )


def test_a_tag_given_lists_the_tags_there_or_says_there_are_none() -> None:
    many = [f"app:{i}" for i in range(1, 12)]
    error = NameNotFound("app:99", tag_given=True, tags=many, side="source", endpoint="e")
    assert error_line(error).endswith(
        "no such image: app:99; the source has app:1, app:2, app:3, app:4, app:5, app:6, app:7, app:8 and 3 more"
    )
    none = NameNotFound("app:1", tag_given=True, tags=[], side="source", endpoint="e")
    assert error_line(none).endswith("no such image: app:1; the source has no tag of app")


def test_an_error_is_one_line_with_the_engines_text_made_harmless() -> None:
    error = EngineError("load failed:\nline two \x1b[2J", side="destination", endpoint="tcp://h:2376")
    line = error_line(error)
    assert "\n" not in line and "\x1b" not in line
    assert line == "docker-d2d: destination tcp://h:2376: load failed:\\nline two \\x1b[2J"


def test_usage_lines_say_where_help_is() -> None:
    assert usage_line("Missing argument 'DESTINATION'.", "docker d2d push") == (
        "missing argument 'DESTINATION'. See 'docker d2d push --help'."
    )
    assert usage_line("No such option: --bogus", "docker-d2d copy") == (
        "no such option: --bogus. See 'docker-d2d copy --help'."
    )


def test_swapped_and_lonely_images() -> None:
    assert swapped("push", "docker d2d", "fx/app:2", ["b:1", "myserver"], "destination") == (
        "'fx/app:2' is an image, not an engine: the destination comes first (docker d2d push myserver fx/app:2 b:1)"
    )
    assert endpoint_only("pull", "docker-d2d", "app:2", "source") == (
        "pull needs a source and an image: 'app:2' was read as the source, and no image was named "
        "(docker-d2d pull SOURCE IMAGE...)"
    )


@pytest.mark.parametrize(
    ("word", "image"),
    [
        ("fx/app:2", True),
        ("app:latest", True),
        ("app@sha256:" + "a" * 64, True),
        ("app:2", False),
        ("myserver", False),
        ("ssh://h", False),
        ("user@host:22", False),
    ],
)
def test_what_reads_as_an_image_rather_than_an_engine(word: str, image: bool) -> None:
    from docker_d2d.app.application import _looks_like_image

    assert _looks_like_image(word) is image


def test_the_engines_reached_are_said_only_once_something_else_is() -> None:
    from docker_d2d.app.console import PlainReporter
    from docker_d2d.endpoint import parse_endpoint
    from docker_d2d.model import EngineInfo, EngineKind

    err = io.StringIO()
    reporter = PlainReporter(out=io.StringIO(), err=err)
    info = EngineInfo(EngineKind.GRAPHDRIVER, "26.1.5", "1.45")
    reporter.connected("source", parse_endpoint("unix:///a.sock"), info)
    reporter.connected("destination", parse_endpoint("unix:///b.sock"), info)
    assert err.getvalue() == ""  # a failure now would be the only line
    reporter.note("something")
    assert err.getvalue().splitlines() == [
        "source: unix:///a.sock — Docker (graphdriver) 26.1.5 (API 1.45)",
        "destination: unix:///b.sock — Docker (graphdriver) 26.1.5 (API 1.45)",
        "note: something",
    ]
