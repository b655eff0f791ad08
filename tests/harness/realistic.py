"""Layers made of real files from this machine (libraries, docs, binaries), not random bytes,
so sizes and compression behave like real images."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from .engines import Engine


def real_files(roots: tuple[str, ...] = ("/usr/lib", "/usr/share", "/usr/bin")) -> Iterator[Path]:
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if path.is_file() and not path.is_symlink():
                    yield path


def fill_dir(target: Path, size: int, skip: int = 0) -> int:
    """Copy real files into `target` until `size` bytes, after passing over the first `skip` bytes
    of the walk (so layers built with different skips hold different files)."""
    target.mkdir(parents=True, exist_ok=True)
    seen = copied = 0
    for path in real_files():
        n = path.stat().st_size
        if n > 8 << 20:
            continue  # a few huge libraries would make layer sizes overshoot
        seen += n
        if seen <= skip:
            continue
        dest = target / str(path).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        copied += n
        if copied >= size:
            break
    return copied


def build_image(engine: Engine, work: Path, name: str, base: str | None, mb: int, skip_mb: int) -> None:
    """A layer of `mb` MB of real files: imported as a base image, or COPYed onto `base`."""
    ctx = work / f"ctx-{name.replace(':', '-')}"
    fill_dir(ctx / "files", mb << 20, skip=skip_mb << 20)
    try:
        if base is None:
            subprocess.run(
                f"tar -C {ctx}/files -c . | docker -H {engine.host} import - {name}",
                shell=True,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        else:
            (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY files/ /\n")
            engine.docker("build", "-q", "-t", name, str(ctx))
    finally:
        shutil.rmtree(ctx)
