from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from typing import Any

from tests.conftest import run_d2d
from tests.harness.engines import Engine
from tests.harness.images import Builder, unique
from tests.harness.registry import Registry


def copy(
    src: Engine, dst: Engine | str, *images: str, extra: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run `docker-d2d copy --json` (to an engine or an address) and return its result event (plus all
    events under 'events')."""
    dst_host = dst if isinstance(dst, str) else dst.host
    proc = run_d2d("copy", "-s", src.host, "-d", dst_host, "--json", *extra, *images, env=env)
    assert proc.returncode == 0, f"copy failed ({proc.returncode}): {proc.stderr}{proc.stdout}"
    events: list[dict[str, Any]] = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result = next((e for e in events if e["event"] == "result"), None)
    assert result is not None, f"no result event: {proc.stdout}{proc.stderr}"
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


def layer_tar_size(engine: Engine, ref: str, diff_id: str) -> int:
    """The size of one layer as `docker save` writes it: what travels when it is sent."""
    with tarfile.open(fileobj=io.BytesIO(engine.docker("save", ref).stdout)) as tar:
        for member in tar.getmembers():
            if member.name in (f"blobs/sha256/{diff_id[7:]}",) or member.name.endswith("/layer.tar"):
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if "sha256:" + hashlib.sha256(data).hexdigest() == diff_id:
                    return len(data)
    raise AssertionError(f"{diff_id} not in the export of {ref}")


def base_and_app(builder: Builder, registry: Registry, src: Engine) -> tuple[str, str]:
    """At the source: a base pulled from the registry (it has a RepoDigest) and an app built on it."""
    base = unique("rfbase") + ":1"
    builder.base(base, size=2_000_000)
    base_ref = registry.put(builder.engine, src, base)
    app = unique("rfapp") + ":1"
    builder.build(app, base, ["COPY a /a"], {"a": random_file(300_000)})
    builder.place(src, app)
    return base_ref, app
