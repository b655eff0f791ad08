"""Orchestration: endpoints -> engines -> plan -> archive stream -> load -> verify -> tags.

Every command (copy, push, pull) comes through `copy_images`.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .archive import Progress, Rewriter, RewriteResult, StreamSpec, WrittenImage
from .compress import Compression, Counted, choose, compressed
from .endpoint import Endpoint
from .engine import Engine
from .errors import D2DError, ImageNotFound, VerifyError
from .lock import destination_lock
from .model import EngineInfo, EngineKind, ImageInfo, ImageRef, as_id_ref, could_be_id, parse_ref, short
from .plan import ImagePlan, TransferPlan, holdings, layer_sizes, plan_transfer, stream_spec
from .prefetch import prefetch


class Reporter(Progress, Protocol):
    def connected(self, side: str, endpoint: Endpoint, info: EngineInfo) -> None: ...
    def planned(self, plan: TransferPlan) -> None: ...
    def note(self, message: str) -> None: ...
    # One export/load: the layers it should send (diff id -> estimated size) and how the body travels.
    def sending(self, layers: dict[str, int | None], compression: Compression) -> None: ...
    def wire_advanced(self, nbytes: int) -> None: ...  # bytes that crossed the link, after compression
    def phase(self, name: str) -> None: ...  # "loading" (the body is all sent), "verifying"


@dataclass(frozen=True)
class CopyOptions:
    dry_run: bool = False
    spool_dir: Path | None = None
    compress: Compression = Compression.AUTO


@dataclass
class CopyResult:
    plan: TransferPlan
    source: EngineInfo
    destination: EngineInfo
    transfers: list[RewriteResult] = field(default_factory=list)
    tagged: list[str] = field(default_factory=list)
    untagged: list[str] = field(default_factory=list)  # "<ref> -> <id>" for digest and id references
    elapsed: float = 0.0
    compression: Compression = Compression.NONE
    wire_bytes: int = 0  # what the load requests carried, after compression
    sending_seconds: float = 0.0  # time the load bodies took to go out
    # Layers by the key the archive reported them under: sent (bytes), and left out (size).
    layers_sent: dict[str, int] = field(default_factory=dict)
    layers_left_out: dict[str, int] = field(default_factory=dict)
    # Destination ids of images whose archive went out whole: the destination may finish
    # loading them even if we stop, so an interrupt must clean them up.
    loaded: list[str] = field(default_factory=list)

    @property
    def bytes_sent(self) -> int:
        return sum(t.bytes_sent for t in self.transfers)

    @property
    def resent(self) -> bool:
        """An image went out twice (the containerd store's fallback), not one load per image."""
        configs = [w.config_digest for t in self.transfers for w in t.images]
        return len(configs) != len(set(configs))


def copy_images(
    source: Endpoint,
    destination: Endpoint,
    refs: Sequence[str],
    reporter: Reporter,
    options: CopyOptions | None = None,
) -> CopyResult:
    options = options or CopyOptions()
    started = time.monotonic()
    parsed = [parse_ref(r) for r in refs]
    try:
        return _copy(source, destination, parsed, reporter, options, started)
    finally:
        from .transport.ssh import close_all

        close_all()


def _copy(
    source: Endpoint,
    destination: Endpoint,
    parsed: list[ImageRef],
    reporter: Reporter,
    options: CopyOptions,
    started: float,
) -> CopyResult:
    with (
        Engine(source, "source") as src,
        Engine(destination, "destination") as dst,
        _one_copy_at_a_time(destination, reporter, options),
    ):
        src_info = src.connect()
        reporter.connected("source", source, src_info)
        dst_info = dst.connect()
        reporter.connected("destination", destination, dst_info)
        requested = [_resolve(src, ref) for ref in parsed]
        plan = plan_transfer(requested, src_info.kind, holdings(dst_info.kind, dst.all_images()))
        reporter.planned(plan)
        result = CopyResult(plan, src_info, dst_info, compression=choose(options.compress, destination, dst_info))
        if options.dry_run:
            result.elapsed = time.monotonic() - started
            return result
        dest_ids = {p.source.id: p.present_as for p in plan.images if p.present_as}
        with _leftovers_removed_on_interrupt(dst, result, reporter):
            if plan.exported:
                dest_ids.update(_transfer_and_verify(src, dst, plan, reporter, options, result))
            for image in plan.images:
                dest_id = dest_ids[image.source.id]
                if image.ref.tagged:
                    dst.tag(dest_id, image.ref.repository, image.ref.tag)
                    result.tagged.append(image.ref.tagged)
                else:
                    result.untagged.append(f"{image.ref.raw} -> {short(dest_id)}")
    result.elapsed = time.monotonic() - started
    return result


def _one_copy_at_a_time(
    destination: Endpoint, reporter: Reporter, options: CopyOptions
) -> contextlib.AbstractContextManager[None]:
    """Two runs to one destination would both plan against what it held before either loaded
    anything, and both send everything: the second waits, then plans against what the first loaded."""
    if options.dry_run:
        return contextlib.nullcontext()

    def waiting() -> None:
        reporter.note(f"another docker-d2d is copying to {destination}; waiting for it to finish")

    return destination_lock(destination, waiting)


@contextlib.contextmanager
def _leftovers_removed_on_interrupt(dst: Engine, result: CopyResult, reporter: Reporter) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM (cli raises a subclass)
        if result.loaded:
            _remove_leftovers(dst, list(dict.fromkeys(result.loaded)), reporter)
        raise


def _remove_leftovers(dst: Engine, ids: list[str], reporter: Reporter) -> None:
    """The archive went out whole before the interrupt: the destination made (or may still make)
    an untagged image of it. Remove it if it is there; else name it."""
    for image_id in ids:
        try:
            if dst.remove_untagged(image_id):
                reporter.note(f"removed the untagged image {short(image_id)} the interrupted load made")
                continue
            there = dst.find(image_id) is not None  # and tagged: someone else's now
        except (KeyboardInterrupt, D2DError):
            there = False
        if not there:
            reporter.note(
                f"the destination may still finish loading image {image_id} (untagged): "
                f"remove it with `docker rmi {short(image_id)}` at {dst.endpoint}"
            )


def _resolve(src: Engine, ref: ImageRef) -> tuple[ImageRef, ImageInfo, tuple[int | None, ...]]:
    try:
        image = src.inspect(ref.raw)
    except ImageNotFound as exc:
        raise ImageNotFound(f"no such image: {ref.raw}", side=exc.side, endpoint=exc.endpoint) from None
    if could_be_id(ref) and ref.tagged not in image.repo_tags and f"localhost/{ref.tagged}" not in image.repo_tags:
        ref = as_id_ref(ref)  # a bare hex string that matched an id, not a name
    return ref, image, layer_sizes(src.history_sizes(image.id), len(image.diff_ids))


def _transfer_and_verify(
    src: Engine,
    dst: Engine,
    plan: TransferPlan,
    reporter: Reporter,
    options: CopyOptions,
    result: CopyResult,
) -> dict[str, str]:
    assert src.info and dst.info
    dest_ids: dict[str, str] = {}
    for batch in _batches(plan, dst.info.kind):
        # Layers loaded by an earlier batch are at the destination now.
        skip = batch.skip | frozenset(d for p in plan.exported if p.source.id in dest_ids for d in p.source.diff_ids)
        spec = stream_spec(batch, src.info, dst.info.kind, skip=skip)
        dest_ids.update(_load_batch(src, dst, batch, spec, reporter, options, result))
    return dest_ids


def _batches(plan: TransferPlan, dest: EngineKind) -> list[TransferPlan]:
    """One archive for all images, except for Podman 4, which loads one image per OCI archive."""
    if dest is not EngineKind.PODMAN:
        return [TransferPlan(plan.exported)]
    by_id: dict[str, list[ImagePlan]] = {}
    for image in plan.exported:
        by_id.setdefault(image.source.id, []).append(image)
    return [TransferPlan(tuple(images)) for images in by_id.values()]


def _load_batch(
    src: Engine,
    dst: Engine,
    batch: TransferPlan,
    spec: StreamSpec,
    reporter: Reporter,
    options: CopyOptions,
    result: CopyResult,
) -> dict[str, str]:
    assert src.info and dst.info
    rewritten = _transfer(src, dst, batch, spec, reporter, options, result)
    result.transfers.append(rewritten)
    dest_ids = _verify(dst, batch, src.info.kind, rewritten)
    incomplete = _incomplete(dst, dest_ids.values())
    if incomplete and spec.skip:
        # The containerd store took the thin archive but lacks some left-out layers under their
        # uncompressed digest (e.g. it holds them compressed, from a registry or its own builds):
        # the image is incomplete. Send every layer so that no image stays incomplete.
        reporter.note(
            "the destination's content store lacks some left-out layers under their uncompressed digest; "
            "sending the image whole"
        )
        full = StreamSpec(spec.output, frozenset(), spec.named, spec.unnamed)
        rewritten = _transfer(src, dst, batch, full, reporter, options, result)
        result.transfers.append(rewritten)
        dest_ids = _verify(dst, batch, src.info.kind, rewritten)
        incomplete = _incomplete(dst, dest_ids.values())
    if incomplete:
        raise VerifyError(
            f"the loaded image {short(incomplete[0])} is incomplete (the engine does not list it)",
            side="destination",
            endpoint=str(dst.endpoint),
        )
    return dest_ids


def _incomplete(dst: Engine, ids: Iterable[str]) -> list[str]:
    """The containerd store loads a thin archive 'successfully' even when it lacks left-out
    blobs, and then hides the image from its list: that is how we tell."""
    if dst.info is None or dst.info.kind is not EngineKind.CONTAINERD:
        return []
    listed = set(dst.list_image_ids())
    return [i for i in set(ids) if i not in listed]


def _transfer(
    src: Engine,
    dst: Engine,
    plan: TransferPlan,
    spec: StreamSpec,
    reporter: Reporter,
    options: CopyOptions,
    result: CopyResult,
) -> RewriteResult:
    ids = list(dict.fromkeys(p.source.id for p in plan.exported))
    with (
        tempfile.TemporaryDirectory(prefix="d2d-", dir=options.spool_dir) as spool,
        src.save(ids) as raw,
        prefetch(raw) as chunks,
    ):
        rewriter = Rewriter(chunks, spec, _Recorded(reporter, result), Path(spool))
        wire = Counted()
        layers = plan.unique_layers()
        reporter.sending({d: lay.size for d, lay in layers.items() if d not in spec.skip}, result.compression)
        assert dst.info is not None
        kind = dst.info.kind

        deferred = _DeferredInterrupt(reporter)

        def all_sent() -> None:
            # The destination has the whole archive: from here it may finish the load even if we stop.
            result.loaded.extend(_destination_id(w, kind) for w in rewriter.result.images)
            result.sending_seconds += time.monotonic() - started
            reporter.phase("loading")
            deferred.start()

        body = compressed(rewriter.stream(), result.compression, wire, lambda: rewriter.emitting_compressed)
        started = time.monotonic()
        try:
            with deferred:
                dst.load(_reported(body, reporter, all_sent))
        except D2DError as exc:
            # Raised inside the body generator (the source's stream or its archive) unless named already.
            raise exc.with_side("source", str(src.endpoint)) from exc
        finally:
            result.wire_bytes += wire.bytes
    reporter.phase("verifying")
    return rewriter.result


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

    def start(self) -> None:
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            signum = getattr(signal, name)
            self.previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
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
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self._restore()
        if self.pending is not None and exc is None:
            self._raise(self.pending, None)


def _destination_id(written: WrittenImage, kind: EngineKind) -> str:
    """The id the destination gives a loaded image (as `_verify` looks it up)."""
    return (written.manifest_digest if kind is EngineKind.CONTAINERD else None) or written.config_digest


def _reported(
    body: Iterable[bytes | memoryview], reporter: Reporter, done: Callable[[], None]
) -> Iterator[bytes | memoryview]:
    for chunk in body:
        yield chunk  # returns once the transport has taken it
        reporter.wire_advanced(len(chunk))
    done()


class _Recorded:
    """Passes the archive's layer events on, and keeps them in the result: the summary then
    counts what the plan lines showed."""

    def __init__(self, reporter: Reporter, result: CopyResult) -> None:
        self.reporter, self.result = reporter, result

    def layer_skipped(self, key: str, size: int) -> None:
        self.result.layers_left_out.setdefault(key, size)
        self.reporter.layer_skipped(key, size)

    def layer_started(self, key: str, size: int) -> None:
        self.result.layers_sent[key] = size
        self.reporter.layer_started(key, size)

    def layer_advanced(self, key: str, nbytes: int) -> None:
        self.reporter.layer_advanced(key, nbytes)

    def layer_finished(self, key: str) -> None:
        self.reporter.layer_finished(key)


def _verify(dst: Engine, plan: TransferPlan, source_kind: EngineKind, rewritten: RewriteResult) -> dict[str, str]:
    """Check that the destination holds each image with the source's config and layers;
    return source id -> destination id."""
    written = {w.config_digest: w for w in rewritten.images}
    dest_ids: dict[str, str] = {}
    for image in plan.exported:
        config = image.source.id if source_kind is not EngineKind.CONTAINERD else rewritten.aliases.get(image.source.id)
        w = written.get(config or "")
        if w is None:
            w = _only_match(rewritten, image)
        if w.diff_ids != image.source.diff_ids:
            raise VerifyError(f"{image.ref}: the export's layers differ from the source's inspect", side="source")
        dest_id = w.manifest_digest if dst.info and dst.info.kind is EngineKind.CONTAINERD else w.config_digest
        assert dest_id
        loaded = dst.find(dest_id)
        if loaded is None:
            raise VerifyError(
                f"{image.ref}: image {short(dest_id)} is not there after the load",
                side="destination",
                endpoint=str(dst.endpoint),
            )
        if loaded.diff_ids != image.source.diff_ids:
            raise VerifyError(
                f"{image.ref}: the loaded image has layers {[short(d) for d in loaded.diff_ids]}, "
                f"the source {[short(d) for d in image.source.diff_ids]}",
                side="destination",
                endpoint=str(dst.endpoint),
            )
        dest_ids[image.source.id] = loaded.id
    return dest_ids


def _only_match(rewritten: RewriteResult, image: ImagePlan) -> WrittenImage:
    matches = [w for w in rewritten.images if w.diff_ids == image.source.diff_ids]
    if len(matches) != 1:
        raise VerifyError(f"{image.ref}: cannot find the image in the source's export", side="source")
    return matches[0]
