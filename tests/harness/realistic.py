"""Layers made of real files from this machine (libraries, docs, binaries), not random bytes,
so sizes and compression behave like real images."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path


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
