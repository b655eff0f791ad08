"""Several destinations in one run: the source is read once, each destination gets its own thin
stream, concurrently, and one failing destination does not stop the others.

Each destination is planned against what it holds; the source exports the union of what any of
them lacks once, into a shared spool (shared_export.py) that every destination reads at its own
pace; each one's rewrite keeps only its own images and leaves out what it holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

from .compress import accepts_zstd_layers
from .copy import deliver, one_copy_at_a_time, plan_for, resolve, save_platform, stale_holdings, tell_stale
from .endpoint import Endpoint
from .engine import Engine
from .errors import D2DError, EngineError, UsageError, VerifyError
from .job import CopyOptions, CopyResult, Reporter
from .model import EngineInfo, ImageInfo, Platform, human_size, parse_ref
from .plan import TransferPlan
from .registry import Registry, Via
from .shared_export import SharedExport
from .shared_rewrite import SharedSource
from .via import PushResult, pull_from_registry, push_to_registry


@dataclass
class HostResult:
    endpoint: Endpoint
    result: CopyResult | None = None
    error: D2DError | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None


@dataclass
class FleetResult:
    source: EngineInfo
    hosts: list[HostResult]
    export_bytes: int = 0  # read from the source, once for all destinations (with a registry: pushed to it)
    streams: int = 0  # distinct streams rewritten from that export: destinations sent the same bytes share one
    dry_run: bool = False
    registry: PushResult | None = None
    elapsed: float = 0.0

    @property
    def failed(self) -> list[HostResult]:
        return [h for h in self.hosts if not h.ok]


def copy_to_many(
    source: Endpoint,
    destinations: Sequence[Endpoint],
    refs: Sequence[str],
    reporter: Reporter,
    reporter_for: Callable[[Endpoint], Reporter],
    options: CopyOptions,
    via: Via | None = None,
) -> FleetResult:
    """`reporter` tells about the source; `reporter_for(destination)` about each destination.
    With `via`, the source's blobs go to that registry once and every destination pulls them."""
    started = time.monotonic()
    parsed = [parse_ref(r) for r in refs]
    try:
        with Engine(source, "source", options.timeouts) as src, ExitStack() as stack:
            src_info = src.connect()
            reporter.connected("source", source, src_info)
            hosts = [HostResult(d) for d in destinations]
            engines = [stack.enter_context(Engine(d, "destination", options.timeouts)) for d in destinations]
            reporters = [reporter_for(d) for d in destinations]
            # One copy at a time per destination, as for a single one; taken in one order, so that two
            # runs to overlapping sets of destinations cannot wait for each other.
            for i in sorted(range(len(destinations)), key=lambda i: str(destinations[i])):
                stack.enter_context(one_copy_at_a_time(destinations[i], reporters[i], options))

            def connect(i: int) -> None:
                reporters[i].connected("destination", hosts[i].endpoint, engines[i].connect())

            _each(hosts, connect)
            platform = options.platform or _common_platform(e.info for e, h in zip(engines, hosts) if not h.error)
            requested = [resolve(src, ref, platform, explicit=options.platform is not None) for ref in parsed]

            held_at_source: list[ImageInfo] = []
            asking = threading.Lock()

            def source_images() -> list[ImageInfo]:
                with asking:  # once for every destination, and only if some plan wants it
                    if not held_at_source:
                        held_at_source.extend(src.all_images())
                return held_at_source

            def plan(i: int) -> None:
                hosts[i].result = plan_for(src_info, engines[i], requested, reporters[i], options, source_images)

            _each(hosts, plan, skip_failed=True)
            fleet = FleetResult(src_info, hosts, dry_run=options.dry_run)
            union = list(dict.fromkeys(p.source.id for r in _results(hosts) for p in r.plan.exported))
            if union and not options.dry_run and via is not None:
                with Registry(via.ref, via.credentials) as registry:
                    wanted = [r for r in requested if r[1].id in union]
                    plain_only = any(e.info and not accepts_zstd_layers(e.info) for e, h in zip(engines, hosts) if h.ok)
                    pushed = push_to_registry(src, wanted, registry, reporter, options.spool_dir, plain_only)
                fleet.export_bytes = pushed.bytes_sent
                fleet.registry = pushed

                def pull(i: int) -> None:
                    result = hosts[i].result
                    assert result is not None
                    pull_from_registry(engines[i], result, pushed, via.engine_auth(), reporters[i])

                _each(hosts, pull, skip_failed=True)
            elif union and not options.dry_run:
                exported = _unique(info for _, info, _ in requested if info.id in union)
                export_plan = TransferPlan(tuple(p for r in _results(hosts) for p in r.plan.exported))
                shared_platform = save_platform(export_plan)
                if shared_platform:  # one platform of an index: the export names the index
                    union = list(dict.fromkeys(p.source.export_as or p.source.id for p in export_plan.exported))
                about = human_size(sum(info.size for info in exported))
                what = f"the source's export (about {about}) for {len(_results(hosts))} destinations"
                with SharedExport(src, union, options.spool_dir, shared_platform, what) as export:
                    shared = SharedSource(source, src_info, export)
                    stop = threading.Event()

                    def send(i: int) -> None:
                        host = hosts[i]
                        assert host.result is not None
                        try:
                            deliver(shared, engines[i], host.result, reporters[i], options, exported, stop)
                        except (EngineError, VerifyError) as exc:
                            # One export serves the whole fleet: no plan of one host is redone in it.
                            if stale_holdings(engines[i], host.result, exc):
                                tell_stale(engines[i], reporters[i], "the next run plans without them")
                            raise

                    def cancel() -> None:
                        stop.set()
                        shared.cancel()

                    try:
                        _each(hosts, send, skip_failed=True, cancel=cancel)
                    finally:
                        shared.close()
                    fleet.export_bytes = export.size
                    fleet.streams = shared.streams
            elif not options.dry_run:

                def tag_only(i: int) -> None:
                    result = hosts[i].result
                    assert result is not None
                    deliver(src, engines[i], result, reporters[i], options)

                _each(hosts, tag_only, skip_failed=True)
            for host in hosts:
                if host.result is not None:
                    host.result.elapsed = time.monotonic() - host.started
        fleet.elapsed = time.monotonic() - started
        return fleet
    finally:
        from .transport.ssh import close_all

        close_all()


def _common_platform(infos: Iterable[EngineInfo | None]) -> Platform:
    """The destinations' platform: what a multi-platform image is copied as. Destinations of
    several platforms in one run need --platform (one export carries one platform)."""
    platforms = {info.platform for info in infos if info is not None}
    if len(platforms) > 1:
        names = ", ".join(sorted(str(p) for p in platforms))
        raise UsageError(f"the destinations run on several platforms ({names}): choose one with --platform")
    return platforms.pop() if platforms else Platform.parse("linux/amd64")


def _results(hosts: Sequence[HostResult]) -> list[CopyResult]:
    return [h.result for h in hosts if h.ok and h.result is not None]


def _each(
    hosts: list[HostResult],
    work: Callable[[int], None],
    skip_failed: bool = False,
    cancel: Callable[[], None] | None = None,
) -> None:
    """Run `work` for every host concurrently; a host's error is its own. Ctrl-C calls `cancel`
    so that the hosts' threads stop instead of finishing their transfers."""

    def guarded(i: int) -> None:
        try:
            work(i)
        except D2DError as exc:
            hosts[i].error = exc.with_side("destination", str(hosts[i].endpoint))
        except OSError as exc:  # our own files: this machine's, not the destination's
            where = f": {exc.filename}" if exc.filename else ""
            hosts[i].error = D2DError(f"{exc.strerror or exc}{where}", side="local")
        except Exception as exc:  # one host's surprise must not sink the others
            where = str(hosts[i].endpoint)
            hosts[i].error = D2DError(f"{type(exc).__name__}: {exc}", side="destination", endpoint=where)

    todo = [i for i, h in enumerate(hosts) if not (skip_failed and h.error)]
    if not todo:
        return
    pool = ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="d2d-host")
    try:
        for future in [pool.submit(guarded, i) for i in todo]:
            future.result()
    except BaseException:
        if cancel is not None:
            cancel()
        raise
    finally:
        pool.shutdown(wait=True)


def _unique(images: Iterator[ImageInfo] | Sequence[ImageInfo]) -> list[ImageInfo]:
    seen: dict[str, ImageInfo] = {}
    for image in images:
        seen.setdefault(image.id, image)
    return list(seen.values())
