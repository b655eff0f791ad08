"""Planning against a destination that holds hundreds of images behind a slow link: inspect answers
are cached by image id (content addresses), so a second run asks only about new ids; an entry the
engine contradicts is dropped and the plan made again once (issue 16, item 4)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_d2d
from tests.harness.delay_proxy import DelayProxy
from tests.harness.engines import Engine
from tests.harness.images import Builder, image_layers, many_images, small_app, unique

from ..helpers import copy, random_file

pytestmark = pytest.mark.engines

INSPECT = r"^GET /v[\d.]+/images/.+/json$"


@pytest.fixture
def far_destination(engines: dict[str, Engine]) -> Iterator[tuple[Engine, DelayProxy]]:
    dst = engines["docker26-twin"]
    proxy = DelayProxy(str(dst.socket), delay=0.025).start()  # a 50 ms round trip
    try:
        yield dst, proxy
    finally:
        proxy.stop()


def test_second_plan_asks_only_about_new_images(
    engines: dict[str, Engine], builder: Builder, far_destination: tuple[Engine, DelayProxy], tmp_path: Path
) -> None:
    dst, proxy = far_destination
    src = engines["docker20"]
    held = many_images(dst, 300, unique("held"))
    base = builder.base(unique("base") + ":1")
    app = unique("app") + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(30_000)})
    builder.place(src, app)
    env = {"DOCKER_D2D_CACHE_DIR": str(tmp_path / "cache")}

    first = copy(src, proxy.host, app, env=env)
    cold = proxy.count(INSPECT)
    assert cold >= len(held)
    assert first["layers_sent"] == 2

    # Another image on the same base: the plan needs what the destination holds, and the cache has it.
    app2 = unique("app") + ":1"
    builder.build(app2, base, ["COPY b /b"], {"b": random_file(30_000)})
    builder.place(src, app2)
    asked_for_app2 = rf"/images/({src.docker('inspect', '-f', '{{.Id}}', app2).stdout.decode().strip()}|{app2})/json$"
    proxy.requests.clear()
    again = copy(src, proxy.host, app2, env=env)
    assert again["layers_sent"] == 1 and again["tagged"] == [app2]
    # By id and by name (not there yet), then once loaded: nothing else is inspected.
    assert proxy.count(INSPECT) == proxy.count(asked_for_app2) <= 3, proxy.requests

    # One image gone, one new: only the new one is asked about, and the gone one is forgotten.
    dst.docker("rmi", held[0])
    newer = many_images(dst, 1, unique("new"))
    app3 = unique("app") + ":1"
    builder.build(app3, base, ["COPY c /c"], {"c": random_file(30_000)})
    builder.place(src, app3)
    asked_for_app3 = rf"/images/({src.docker('inspect', '-f', '{{.Id}}', app3).stdout.decode().strip()}|{app3})/json$"
    proxy.requests.clear()
    copy(src, proxy.host, app3, env=env)
    assert proxy.count(INSPECT) - proxy.count(asked_for_app3) == 1, proxy.requests
    assert any(newer)


def _notes(result: dict[str, Any]) -> list[str]:
    return [str(e["message"]) for e in result["events"] if e["event"] == "note"]


STALE = "the destination's inspect cache was wrong about 1 image(s)"


def test_a_cold_noop_asks_only_about_the_requested_image(
    engines: dict[str, Engine], builder: Builder, far_destination: tuple[Engine, DelayProxy], tmp_path: Path
) -> None:
    """Issue 16, item 9: the destination holds the image already and 300 others, the cache is empty:
    the plan asks about the requested image, not about everything the destination holds."""
    dst, proxy = far_destination
    src = engines["docker20"]
    many_images(dst, 300, unique("crowd"))
    app = small_app(builder, src, "noop", b"already there\n")
    builder.place(dst, app)

    again = copy(src, proxy.host, app, env={"DOCKER_D2D_CACHE_DIR": str(tmp_path / "empty")})

    assert again["bytes_sent"] == 0 and again["layers_sent"] == 0
    # The image by id; the list filtered by the label of partial images, to drop leftovers.
    assert proxy.count(INSPECT) == 1 and proxy.count(r"^GET /v[\d.]+/images/json") <= 1, proxy.requests
    assert sum(proxy.requests.values()) <= 8, proxy.requests


@pytest.mark.parametrize("destination", ["docker20", "podman"])
def test_a_cache_entry_the_engine_contradicts_heals_once(
    engines: dict[str, Engine], builder: Builder, tmp_path: Path, destination: str
) -> None:
    """An entry that claims layers its image does not have (a cache written wrong, or carried over
    from elsewhere): the load the plan made from it is refused, the entry is dropped, the plan made
    again once, with a note; the next run notes nothing."""
    src, dst = engines["docker28"], engines[destination]
    other = small_app(builder, dst, "other", random_file(20_000))
    base = builder.base(unique("healbase") + ":1")
    app = unique("healapp") + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(30_000)})
    app2 = unique("healapp") + ":2"
    builder.build(app2, app, ["COPY b /b"], {"b": random_file(30_000)})
    builder.place(src, app, app2)
    cache = tmp_path / "cache"
    env = {"DOCKER_D2D_CACHE_DIR": str(cache)}
    assert run_d2d("copy", "--dry-run", "-q", "-s", src.host, "-d", dst.host, app, env=env).returncode == 0

    # The entry of `other` now claims the app's layers.
    other_id = dst.docker("image", "inspect", "--format", "{{.Id}}", other).stdout.decode().strip()
    (path,) = [p for p in (cache / "inspect").glob("*.json") if other_id in p.read_text()]
    doc = json.loads(path.read_text())
    doc["images"][other_id]["diff_ids"] = image_layers(src, app)
    path.write_text(json.dumps(doc))

    healed = copy(src, dst, app, env=env)
    assert healed["tagged"] == [app] and healed["layers_sent"] == 2
    assert sum(STALE in n and "planned again" in n for n in _notes(healed)) == 1, _notes(healed)
    assert image_layers(dst, app) == image_layers(src, app)

    after = copy(src, dst, app2, env=env)
    assert after["layers_sent"] == 1 and not any("inspect cache" in n for n in _notes(after)), _notes(after)


def test_a_containerd_image_whose_content_went_behind_our_back(
    engines: dict[str, Engine], builder: Builder, tmp_path: Path
) -> None:
    """The store's blobs of a cached image removed (`ctr content rm`): Docker 28.5 still lists the
    image, and inspect then answers no layers. The next plan asks the engine instead of trusting the
    cache, says so once, and counts those layers as missing."""
    src, dst = engines["docker28"], engines["docker28c"]
    base = builder.base(unique("gonebase") + ":1")
    app = unique("goneapp") + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(30_000)})
    builder.place(src, app, base)
    env = {"DOCKER_D2D_CACHE_DIR": str(tmp_path / "cache")}
    copy(src, dst, base, env=env)
    for diff in image_layers(dst, base):
        dst.ctr("content", "rm", diff)
    (inspected,) = json.loads(dst.docker("image", "inspect", base).stdout)
    assert not inspected["RootFS"].get("Layers"), "test setup: listed, and no layers"

    healed = copy(src, dst, app, env=env)
    assert healed["tagged"] == [app] and healed["layers_sent"] == 2
    notes = _notes(healed)
    assert sum(STALE in n and "asked the engine" in n for n in notes) == 1, notes
    assert not any("cannot name" in n for n in notes), notes  # the plan no longer counts them as held
    assert image_layers(dst, app) == image_layers(src, app)

    again = copy(src, dst, app, env=env)
    assert not any("inspect cache" in n for n in _notes(again)), _notes(again)
