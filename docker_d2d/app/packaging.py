"""Installing docker-d2d where the docker CLI looks for plugins."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

from ..errors import D2DError


def current_executable() -> Path | None:
    """The file that runs this docker-d2d: the console script, or the single-file build."""
    for candidate in (sys.argv[0], shutil.which("docker-d2d")):
        if candidate and Path(candidate).name.startswith("docker-d2d") and os.access(candidate, os.X_OK):
            return Path(candidate).resolve()
    return None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def install_plugin(target: Path) -> str:
    """Link (or write a wrapper) at `target`; returns what was done, for the user."""
    exe = current_executable()
    if exe is not None and _same_file(exe, target):
        # A single-file build run from where it lies (or a link to this very file): replacing
        # it would delete the running program.
        return f"already installed: {target} is this docker-d2d"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        if exe is not None:
            target.symlink_to(exe)
        else:
            # Run as `python -m ...`: a wrapper with this interpreter does the same job.
            target.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m docker_d2d.main "$@"\n')
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError as exc:
        raise D2DError(f"cannot install the plugin at {target}: {exc.strerror or exc}") from exc
    return f"installed {target}"


def uninstall_plugin(target: Path) -> str:
    try:
        if not (target.is_symlink() or target.exists()):
            return f"not installed at {target}"
        if target.is_dir() and not target.is_symlink():
            raise D2DError(f"cannot uninstall the plugin at {target}: it is a directory, not docker-d2d")
        target.unlink()
    except OSError as exc:
        raise D2DError(f"cannot uninstall the plugin at {target}: {exc.strerror or exc}") from exc
    return f"removed {target}"
