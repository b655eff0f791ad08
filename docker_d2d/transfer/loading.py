"""Sending a rewrite into the destination's load: one archive, or a pipeline of checkpointed ones;
and what an interrupt does while a load is going on.

A checkpointed rewrite (formats/rewrite.py, Rewrite.archives) is loaded as a pipeline: each archive goes to
a load of its own on a thread, and the next one starts streaming as soon as the previous body
went out, while the destination is still applying its layers. Only an archive's image entries
wait (formats/rewrite.py, Archive.barrier) until the earlier loads are done, since they name layers those
loads bring. So a checkpointed copy costs about what one archive would, not the sum of the loads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ..endpoint import Endpoint
from ..errors import D2DError
from ..formats.entries import Cut, RewriteResult
from ..formats.rewrite import Archive, Rewrite
from ..model import EngineKind
from . import checkpoints
from .compress import Compression, compressed

# How long a stopping copy waits for a load still sending to notice (a thread blocked on a full
# socket notices only when the process ends, and the destination then drops its body).
STOP_WAIT = 2.0

if TYPE_CHECKING:
    from ..engine.protocol import DestinationEngine
    from ..formats.entries import Buffer
    from .job import CopyResult, Reporter


class WireArchive(Protocol):
    """One load body, as its bytes go on the wire (see formats/rewrite.py Archive for `cut` and `barrier`)."""

    barrier: Callable[[], None]

    @property
    def cut(self) -> Cut | None: ...

    def __iter__(self) -> Iterator[Buffer]: ...


class Outgoing(Protocol):
    """What a destination is sent: a rewrite's archives, compressed for the link. `result` is
    complete once the last archive has been read to its end."""

    @property
    def checkpointed(self) -> bool: ...

    @property
    def result(self) -> RewriteResult: ...

    def archives(self) -> Iterator[WireArchive]: ...


class Compressing:
    """A rewrite of this destination's own, compressed as it is sent."""

    def __init__(self, rewriter: Rewrite, how: Compression) -> None:
        self.rewriter = rewriter
        self.how = how

    @property
    def checkpointed(self) -> bool:
        return self.rewriter.spec.checkpoint is not None

    @property
    def result(self) -> RewriteResult:
        return self.rewriter.result

    def archives(self) -> Iterator[WireArchive]:
        for archive in self.rewriter.archives():
            yield _Compressed(archive, self.how, lambda: self.rewriter.emitting_compressed)


class _Compressed:
    def __init__(self, archive: Archive, how: Compression, stored: Callable[[], bool]) -> None:
        self.archive, self.how, self.stored = archive, how, stored

    @property
    def cut(self) -> Cut | None:
        return self.archive.cut

    @property
    def barrier(self) -> Callable[[], None]:
        return self.archive.barrier

    @barrier.setter
    def barrier(self, wait: Callable[[], None]) -> None:
        self.archive.barrier = wait

    def __iter__(self) -> Iterator[Buffer]:
        # Each output goes on the link as it is made: how long it takes tells the link's speed.
        return compressed(self.archive, self.how, self.stored, timed=True)


def load_archives(
    source: Endpoint, dst: DestinationEngine, outgoing: Outgoing, reporter: Reporter, result: CopyResult
) -> None:
    deferred = _DeferredInterrupt(reporter)
    archives = outgoing.archives()
    if not outgoing.checkpointed:
        load = _Load(source, dst, next(archives), outgoing, reporter, result, deferred)
        with deferred:
            load.run()  # here, on this thread: one archive, nothing to overlap
        if load.error is not None:
            raise load.error
        return
    loads: list[_Load] = []
    stopping = threading.Event()
    with deferred:
        try:
            for archive in archives:
                previous = loads[-1] if loads else None
                load = _Load(source, dst, archive, outgoing, reporter, result, deferred, previous, stopping)
                loads.append(load)
                load.start()
                load.sent.wait()  # this body is out (or failed): the rewrite may go on with the next
                if load.error is not None:
                    raise load.error
            loads[-1].finish()
        except BaseException:
            stopping.set()
            _keep_what_landed(loads)
            raise


def _keep_what_landed(loads: list[_Load]) -> None:
    """The copy stops: partial images whose archive went out whole may still land; wait for those
    loads and name what they made, so that the next run resumes from them (a second interrupt
    stops at once)."""
    for load in loads:
        if not load.whole:
            # Still sending: it stops at its next chunk (`stopping`), unless that was its last.
            load.join(timeout=STOP_WAIT)
        if load.archive.cut is not None and load.whole:
            try:
                load.finish()
            except D2DError:
                return


class _Load(threading.Thread):
    """One archive's load. Run on a thread of its own in a pipeline (start), else in place (run)."""

    def __init__(
        self,
        source: Endpoint,
        dst: DestinationEngine,
        archive: WireArchive,
        outgoing: Outgoing,
        reporter: Reporter,
        result: CopyResult,
        deferred: _DeferredInterrupt,
        previous: _Load | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        super().__init__(daemon=True)  # never keeps the process: an interrupt ends the copy at once
        self.source, self.dst, self.archive, self.outgoing = source, dst, archive, outgoing
        self.reporter, self.result, self.deferred = reporter, result, deferred
        self.sent = threading.Event()  # the body went out whole, or the load failed
        self.whole = False
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._kept = False
        self.stopping = stopping or threading.Event()
        if previous is not None:
            archive.barrier = previous.finish

    def run(self) -> None:
        assert self.dst.info is not None
        kind = self.dst.info.kind
        started = time.monotonic()

        def all_sent() -> None:
            # The destination has the whole archive: from here it may finish the load even if we stop.
            self.result.sending_seconds += time.monotonic() - started
            self.whole = True
            if self.archive.cut is None:
                self.result.loaded.extend(
                    w.loaded_as(kind is EngineKind.CONTAINERD) for w in self.outgoing.result.images
                )
                self.deferred.arm()  # before the phase is told: an interrupt that follows it is deferred
                self.reporter.phase("loading")
            self.sent.set()

        try:
            self.dst.load(_reported(self.archive, self.reporter, self.result, all_sent, self.stopping))
        except D2DError as exc:
            # Raised inside the body generator (the source's stream or its archive) unless named already.
            self.error = exc.with_side("source", str(self.source))
        except BaseException as exc:
            self.error = exc
        finally:
            self.sent.set()

    def finish(self) -> None:
        """Wait for the load to end; raise what it failed with; name the partial images it made."""
        with self._lock:
            if self.is_alive():
                self.join()
            if self.error is not None:
                raise self.error
            if self.archive.cut is not None and not self._kept:
                self._kept = True
                checkpoints.keep_partials(self.dst, self.archive.cut, self.reporter, self.result)


class _DeferredInterrupt:
    """Once the destination has the whole archive, a first Ctrl-C (or SIGTERM) waits for the load
    to end before it takes effect: cut off now, the load may fail or complete behind our back;
    finished, the image it made is known and removed by the interrupt's cleanup. A second signal
    stops at once (the cleanup then names the image the destination may still make)."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.previous: dict[int, Any] = {}
        self.pending: int | None = None
        self.armed = False

    def arm(self) -> None:
        """The whole body went out. Called from whichever thread the transport sends the body on:
        the handlers themselves are installed by `with` (signal handlers need the main thread)."""
        self.armed = True

    def _handle(self, signum: int, frame: Any) -> None:
        if not self.armed:  # the body is still going out: the interrupt takes effect at once
            self._restore()
            self._raise(signum, frame)
        if self.pending is None:
            self.pending = signum
            self.reporter.note(
                "the destination has the whole archive and is loading it: waiting for the load to end, "
                "to remove the image it makes (interrupt again to stop at once)"
            )
            return
        self._restore()
        self._raise(signum, frame)

    def _restore(self) -> None:
        import signal

        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def _raise(self, signum: int, frame: Any) -> None:
        import signal

        handler = signal.getsignal(signum)
        if callable(handler):
            handler(signum, frame)  # Python's own raises KeyboardInterrupt, the CLI's its Terminated
        raise KeyboardInterrupt

    def __enter__(self) -> _DeferredInterrupt:
        import signal

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                signum = getattr(signal, name)
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self._restore()
        if self.pending is not None and exc is None:
            self._raise(self.pending, None)


def _reported(
    body: Iterable[Buffer],
    reporter: Reporter,
    result: CopyResult,
    done: Callable[[], None],
    stopping: threading.Event,
) -> Iterator[Buffer]:
    for chunk in body:
        if stopping.is_set():  # the copy stopped: a body cut short is a load the engine drops
            raise KeyboardInterrupt
        yield chunk  # returns once the transport has taken it
        result.wire_bytes += len(chunk)
        reporter.wire_advanced(len(chunk))
    done()
