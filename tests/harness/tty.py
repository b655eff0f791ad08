"""Run a program on a real terminal (tmux), type into it and read the screen."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Screen:
    def __init__(self, session: str) -> None:
        self.session = session

    def text(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True, text=True).stdout

    def wait_for(self, needle: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.text()
            if needle in screen:
                return screen
            time.sleep(0.3)
        raise AssertionError(f"{needle!r} never appeared:\n{screen}")

    def send(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, *keys], check=True)


@contextmanager
def terminal(*command: str, width: int = 150, height: int = 30) -> Iterator[Screen]:
    """`command` runs in a fresh tmux session; the session is killed on exit."""
    session = f"d2d{os.getpid()}{time.monotonic_ns() % 100000}"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), *command], check=True
    )
    try:
        yield Screen(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
