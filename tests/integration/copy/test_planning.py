"""Planning against a destination that holds hundreds of images behind a slow link: inspect answers
are cached by image id (content addresses), so a second run asks only about new ids."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.delay_proxy import DelayProxy
from tests.harness.engines import Engine
from tests.harness.images import Builder, many_images, unique

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

    proxy.requests.clear()
    again = copy(src, proxy.host, app, env=env)
    assert again["bytes_sent"] == 0 and again["tagged"] == [app]
    assert proxy.count(INSPECT) == 0, proxy.requests

    # One image gone, one new: only the new one is asked about, and the gone one is forgotten.
    dst.docker("rmi", held[0])
    newer = many_images(dst, 1, unique("new"))
    proxy.requests.clear()
    copy(src, proxy.host, app, env=env)
    assert proxy.count(INSPECT) == 1, proxy.requests
    assert any(newer)
