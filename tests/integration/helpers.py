from __future__ import annotations

import json
import os
from typing import Any

from tests.conftest import run_d2d
from tests.harness.engines import Engine
from tests.harness.images import Builder, unique


def copy(
    src: Engine, dst: Engine | str, *images: str, extra: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `docker-d2d copy --json` (to an engine or an address) and return its result event (plus all
    events under 'events')."""
    dst_host = dst if isinstance(dst, str) else dst.host
    proc = run_d2d("copy", "-s", src.host, "-d", dst_host, "--json", *extra, *images, env=env)
    assert proc.returncode == 0, f"copy failed ({proc.returncode}): {proc.stderr}{proc.stdout}"
    events: list[dict[str, Any]] = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result = next(e for e in events if e["event"] == "result")
    result["events"] = events
    return result


def saved_layers(engine: Engine, ref: str) -> int:
    """How many layer blobs `docker save` writes: an incomplete containerd image writes none."""
    import io
    import tarfile

    data = engine.docker("save", ref).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        names = set(tar.getnames())
    return sum(1 for item in manifest for layer in item["Layers"] if layer in names)


def random_file(size: int) -> bytes:
    return os.urandom(size)


def built_in_the_store(engines: dict[str, Engine], builder: Builder) -> tuple[str, str]:
    """An image built by the containerd store itself, whose blobs it keeps gzip-compressed."""
    src = engines["docker26c"]
    base = builder.base(unique("cbase") + ":1", size=100_000)
    builder.place(src, base)
    app = unique("cbuilt") + ":1"
    ctx = Builder(src)
    ctx.build(app, base, ["COPY a /a", "COPY b /b"], {"a": random_file(400_000), "b": b"text\n" * 50_000})
    return base, app
