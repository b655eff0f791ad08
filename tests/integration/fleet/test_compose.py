"""Compose projects: the same files read by the real Compose plugin and by our own reader select
the same images, and those images land at a real destination."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_d2d
from tests.harness.engines import ENGINES_DIR, Engine
from tests.harness.images import Builder, image_exists, unique

from ..helpers import copy, random_file

pytestmark = pytest.mark.engines

COMPOSE_PLUGIN = ENGINES_DIR / "compose/usr/libexec/docker/cli-plugins/docker-compose"


def docker_config(base: Path, with_compose: bool) -> dict[str, str]:
    """A private docker config dir, with or without the Compose plugin (no compose is installed system-wide)."""
    cfg = base / ("with-compose" if with_compose else "without-compose")
    (cfg / "cli-plugins").mkdir(parents=True, exist_ok=True)
    if with_compose:
        assert COMPOSE_PLUGIN.exists(), f"{COMPOSE_PLUGIN} missing: run .ci/setup-machine"
        link = cfg / "cli-plugins/docker-compose"
        if not link.exists():
            link.symlink_to(COMPOSE_PLUGIN)
    return {"DOCKER_CONFIG": str(cfg)}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, engines: dict[str, Engine], builder: Builder) -> Path:
    """A project whose images sit at docker20: interpolation from .env and the environment, an override
    file, a build-only service, a profile-only service and a dependency."""
    name = unique("Shop_Proj")  # normalized by Compose to lower case
    root = tmp_path_factory.mktemp("compose") / name
    root.mkdir()
    app, tag = unique("app"), "7"
    (root / ".env").write_text(f"APP={app}\nTAG={tag}\n# a comment\n")
    (root / "compose.yaml").write_text(
        "services:\n"
        "  web:\n    image: ${APP}:${TAG:?set TAG}\n    depends_on: [db]\n"
        "  db:\n    image: ${APP}-db:${DB_TAG:-16}\n"
        "  worker:\n    build: .\n"
        "  debug:\n    image: ${APP}-tool:1\n    profiles: [debug]\n"
    )
    (root / "compose.override.yaml").write_text("services:\n  db:\n    image: ${APP}-db:${DB_TAG:-16}-override\n")
    (root / "Dockerfile").write_text("FROM scratch\n")
    base = builder.base(unique("cbase") + ":1")
    refs = [f"{app}:{tag}", f"{app}-db:16-override", f"{name.lower()}-worker:latest", f"{app}-tool:1"]
    for i, ref in enumerate(refs):
        builder.build(ref, base, ["COPY f /f"], {"f": random_file(20_000 + i)})
    builder.place(engines["docker20"], *refs)
    return root


def selected(result: dict[str, object]) -> set[str]:
    tagged = result["tagged"]
    assert isinstance(tagged, list)
    return {str(t) for t in tagged}


@pytest.mark.parametrize("with_compose", [True, False], ids=["real-compose", "own-reader"])
@pytest.mark.parametrize(
    ("args", "expect"),
    [
        ((), {"web", "db", "worker"}),
        (("--profile", "debug"), {"web", "db", "worker", "debug"}),
        (("web",), {"web", "db"}),
        (("debug",), {"debug"}),
    ],
    ids=["all", "profile", "service+deps", "profiled-service-by-name"],
)
def test_compose_project_images_land(
    engines: dict[str, Engine],
    project: Path,
    tmp_path: Path,
    with_compose: bool,
    args: tuple[str, ...],
    expect: set[str],
) -> None:
    env = docker_config(tmp_path, with_compose)
    app = (project / ".env").read_text().split("\n")[0].removeprefix("APP=")
    names = {
        "web": f"{app}:7",
        "db": f"{app}-db:16-override",
        "worker": f"{project.name.lower()}-worker:latest",
        "debug": f"{app}-tool:1",
    }
    dst = engines["docker26"] if with_compose else engines["docker26-twin"]
    files = ("-f", str(project / "compose.yaml"), "-f", str(project / "compose.override.yaml"))
    result = copy(engines["docker20"], dst, *args, extra=files, env=env)
    assert selected(result) == {names[s] for s in expect}
    for service in expect:
        assert image_exists(dst, names[service])


@pytest.mark.parametrize("with_compose", [True, False], ids=["real-compose", "own-reader"])
def test_compose_errors_are_one_line(
    engines: dict[str, Engine], project: Path, tmp_path: Path, with_compose: bool
) -> None:
    env = docker_config(tmp_path, with_compose)
    bad = project / "bad.yaml"
    bad.write_text("services:\n  web:\n    image: app:${NOT_SET_ANYWHERE:?needs a tag}\n")
    src, dst = engines["docker20"].host, engines["docker26"].host
    proc = run_d2d("copy", "-s", src, "-d", dst, "-f", str(bad), env=env)
    assert proc.returncode == 2
    assert "NOT_SET_ANYWHERE" in proc.stderr and "needs a tag" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # Which reader answered shows in the message: the real Compose's words are passed on as they are.
    assert ("docker compose:" in proc.stderr) == with_compose

    proc = run_d2d("copy", "-s", src, "-d", dst, "-f", str(project / "compose.yaml"), "nope", env=env)
    assert proc.returncode == 2 and "no service 'nope'" in proc.stderr
