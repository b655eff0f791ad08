from __future__ import annotations

import json
import os
from typing import Any

from tests.conftest import run_d2d
from tests.harness.engines import Engine


def copy(src: Engine, dst: Engine, *images: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run `docker-d2d copy --json` and return its result event (plus all events under 'events')."""
    proc = run_d2d("copy", "-s", src.host, "-d", dst.host, "--json", *extra, *images)
    assert proc.returncode == 0, f"copy failed ({proc.returncode}): {proc.stderr}{proc.stdout}"
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    result = next(e for e in events if e["event"] == "result")
    result["events"] = events
    return result


def dest_ref(dst: Engine, ref: str) -> str:
    return ref


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
