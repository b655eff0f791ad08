"""A run's private spool directories (issue 16, item 7): a later run removes those of runs that
died, and leaves a live run's, and what is not ours, alone."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from pytest import MonkeyPatch

from docker_d2d.transfer.spool import Spool, private_dir


def test_private_spool_dirs_of_dead_runs_are_swept(tmp_path: Path) -> None:
    dead, alive, foreign = (tmp_path / f"d2d-run-{n}" for n in ("dead", "alive", "foreign"))
    for d in (dead, alive, foreign):
        d.mkdir()
        (d / "d2d-export-x").write_bytes(b"x" * 100)
    (dead / ".owner").write_text("")
    (alive / ".owner").write_text("")
    fd = os.open(alive / ".owner", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # its run lives
    try:
        with private_dir(tmp_path) as mine:
            assert mine.name.startswith("d2d-run-") and (mine / ".owner").exists()
            assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, foreign.name, mine.name])
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, foreign.name])
    finally:
        os.close(fd)


def test_a_shared_spool_lives_in_a_private_directory_it_removes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "d2d-export-", "the source's export")
    spool.write(b"x" * 10)
    spool.end()
    assert spool.path.parent == spool.directory and spool.directory.parent == tmp_path
    assert spool.directory.name.startswith("d2d-run-")
    assert b"".join(spool.follow()) == b"x" * 10
    spool.remove()
    assert list(tmp_path.iterdir()) == []


def test_half_made_dirs_of_runs_killed_while_making_them_are_swept(tmp_path: Path) -> None:
    """A run killed between making its directory and holding its owner lock (issue 16, item 7)."""
    no_owner, unlocked, fresh = (tmp_path / f"d2d-new-{n}" for n in ("old", "unlocked", "fresh"))
    for d in (no_owner, unlocked, fresh):
        d.mkdir()
    (unlocked / ".owner").write_text("")
    os.utime(no_owner, (0, 0))  # long ago
    with private_dir(tmp_path) as mine:
        # One made a moment ago without its owner file yet may be another run's, being made.
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, mine.name])


def test_a_maker_whose_half_made_dir_was_swept_makes_another(tmp_path: Path, monkeypatch: MonkeyPatch) -> None:
    real_rename = os.rename
    swept: list[str] = []

    def rename_after_a_sweep(src: str, dst: str) -> None:
        if not swept:  # another run's sweep took it between the lock and the name
            swept.append(src)
            shutil.rmtree(src)
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_a_sweep)
    with private_dir(tmp_path) as mine:
        assert mine.name.startswith("d2d-run-") and (mine / ".owner").exists() and swept
