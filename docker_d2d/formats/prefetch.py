"""Read an iterator ahead on a thread, so the source's export and the destination's load
overlap instead of taking turns (the GIL is released during socket I/O)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
_END = object()


@contextmanager
def prefetch(source: Iterator[T], depth: int = 16) -> Iterator[Iterator[T]]:
    """At most `depth` items are held ahead. Errors in the reader re-raise in the consumer;
    leaving the block stops the reader and joins it."""
    items: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # re-raised on the consumer's side
            put(exc)

    def consume() -> Iterator[T]:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    thread = threading.Thread(target=reader, name="d2d-prefetch", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join(timeout=5)
