from __future__ import annotations

from pathlib import Path

import pytest

from docker_d2d.app.compose import (
    Project,
    Selection,
    Service,
    interpolate,
    normalize_project_name,
    parse_project,
    project_images,
    read_dotenv,
)
from docker_d2d.errors import UsageError

ENV = {"TAG": "3", "EMPTY": "", "REG": "127.0.0.1:5000"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("app:${TAG}", "app:3"),
        ("app:$TAG", "app:3"),
        ("app:${MISSING}", "app:"),
        ("app:${MISSING:-1}", "app:1"),
        ("app:${EMPTY:-1}", "app:1"),
        ("app:${EMPTY-1}", "app:"),
        ("app:${MISSING-1}", "app:1"),
        ("app:${TAG:+x}", "app:x"),
        ("app:${EMPTY:+x}", "app:"),
        ("app:${EMPTY+x}", "app:x"),
        ("$${TAG}", "${TAG}"),
        ("$$TAG", "$TAG"),
        ("${MISSING:-${REG}/app}:${TAG}", "127.0.0.1:5000/app:3"),
        ("${REG}/app", "127.0.0.1:5000/app"),
    ],
)
def test_interpolation_follows_the_compose_spec(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


@pytest.mark.parametrize("text", ["${MISSING:?no tag}", "${EMPTY:?no tag}", "${MISSING?no tag}"])
def test_required_variables_fail_with_their_message(text: str) -> None:
    with pytest.raises(UsageError, match=r"MISSING|EMPTY"):
        interpolate(text, ENV, "services.web.image")


def test_required_without_colon_accepts_empty() -> None:
    assert interpolate("a${EMPTY?x}b", ENV) == "ab"


@pytest.mark.parametrize("text", ["${", "${TAG", "$-", "${1BAD}"])
def test_bad_interpolation_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        interpolate(text, ENV, "x")


def test_dotenv(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("# comment\nA=1\nexport B = two # trailing\nC='${A} literal'\nD=\"x\\ty\"\nE=${A}-e\n\n")
    assert read_dotenv(env) == {"A": "1", "B": "two", "C": "${A} literal", "D": "x\ty", "E": "1-e"}
    assert read_dotenv(tmp_path / "missing") == {}


def test_project_name_normalized() -> None:
    assert normalize_project_name("My_Proj.v2") == "my_projv2"
    assert normalize_project_name("-x") == "x"


PROJECT = Project(
    "shop",
    {
        "web": Service("web", "web:1", False, depends_on=("api",)),
        "api": Service("api", None, True, depends_on=("db",)),
        "db": Service("db", "db:16", False),
        "debug": Service("debug", "tool:1", False, profiles=("debug",)),
        "again": Service("again", "web:1", False),
    },
)


def test_all_active_services_each_image_once() -> None:
    assert project_images(PROJECT, (), frozenset()) == ["web:1", "shop-api", "db:16"]
    assert project_images(PROJECT, (), frozenset({"debug"})) == ["web:1", "shop-api", "db:16", "tool:1"]


def test_named_services_bring_their_dependencies_and_ignore_profiles() -> None:
    assert project_images(PROJECT, ("api",), frozenset()) == ["shop-api", "db:16"]
    assert project_images(PROJECT, ("debug",), frozenset()) == ["tool:1"]


def test_unknown_service_names_the_known_ones() -> None:
    with pytest.raises(UsageError, match=r"no service 'nope'.*again, api, db, debug, web"):
        project_images(PROJECT, ("nope",), frozenset())


def test_own_parser_merges_files_and_reads_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("TAG=7\nREG=reg.local:5000\n")
    first = tmp_path / "compose.yaml"
    first.write_text(
        "services:\n"
        "  web:\n    image: ${REG}/web:${TAG}\n    depends_on: {db: {condition: service_healthy}}\n"
        "  db:\n    image: db:${DB_TAG:-16}\n"
        "  worker:\n    build: .\n"
    )
    second = tmp_path / "override.yaml"
    second.write_text("name: Shop\nservices:\n  worker:\n    image: worker:${TAG}\n    build: {context: .}\n")
    project = parse_project(Selection((first, second)), {"TAG": "8"})
    assert project.name == "shop"
    assert project.services["web"] == Service("web", "reg.local:5000/web:8", False, (), ("db",))
    assert project.services["worker"].image == "worker:8"
    assert project.services["db"].image == "db:16"
