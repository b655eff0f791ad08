"""A full spool directory (issue 16, item 6): one error naming the directory the user chose, its
room, what was being spooled and --spool-dir; on the source host, its temp dir and TMPDIR."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from docker_d2d.formats.errors import SpoolFull
from docker_d2d.formats.spooling import PRIVATE_DIR, spooling


def test_a_full_spool_names_the_directory_the_user_chose(tmp_path: Path) -> None:
    private = tmp_path / (PRIVATE_DIR + "x")
    with pytest.raises(SpoolFull) as info, spooling(private, "a layer of 6.0MB"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert info.value.side == "local" and info.value.directory == str(tmp_path)
    assert str(info.value).startswith(f"local: no space left in the spool directory {tmp_path} (")
    assert str(info.value).endswith("free) for a layer of 6.0MB: give --spool-dir a directory with more room")


def test_on_the_source_host_it_names_the_temp_dir_and_tmpdir() -> None:
    with pytest.raises(SpoolFull) as info, spooling(None, "a layer of 1.0MB", local=False):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert info.value.side is None and "on the source host" in str(info.value) and "TMPDIR" in str(info.value)


def test_other_failures_pass_as_they_are(tmp_path: Path) -> None:
    with pytest.raises(PermissionError), spooling(tmp_path, "x"):
        raise PermissionError(errno.EACCES, "Permission denied")
