"""Several destinations in one run: a Transfer per destination over one source read once, each
destination its own thin stream, concurrently; one failing destination does not stop the others.

Each destination is planned against what it holds; the source exports the union of what any of
them lacks once, into a shared spool (shared_export.py) that every destination reads at its own
pace; each one's rewrite keeps only its own images and leaves out what it holds (destinations
sent the same bytes share one rewrite, shared_rewrite.py). With --via, the blobs go to a registry
once and every destination pulls them (via.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from ..endpoint import Endpoint
from ..engine.pool import SSHPool
from ..engine.sides import connect_notes, found_node_note, node_instead, open_side
from ..errors import D2DError, EngineError, SocketMissing, UsageError, VerifyError
from ..formats.digests import human_size
from ..model import EngineInfo, ImageInfo, Platform, parse_ref
from ..registry.auth import Via
from ..registry.client import Registry
from .compress import accepts_zstd_layers
from .job import CopyOptions, CopyResult, FleetResult, HostResult, Reporter
from .plan import TransferPlan
from .requests import resolve, save_platform
from .shared_export import SharedExport
from .shared_rewrite import SharedSource
from .sources import ExportSource
from .stores import local_store
from .transfer import Transfer, one_copy_at_a_time, plan_for, stale_holdings, tell_stale
from .via import pull_from_registry, push_to_registry


def copy_to_many(
    source: Endpoint,
    destinations: Sequence[Endpoint],
    refs: Sequence[str],
    reporter: Reporter,
    reporter_for: Callable[[Endpoint], Reporter],
    options: CopyOptions,
    ssh: SSHPool,
    via: Via | None = None,
) -> FleetResult:
    """`reporter` tells about the source; `reporter_for(destination)` about each destination.
    With `via`, the source's blobs go to that registry once and every destination pulls them.
    Engines over ssh use the run's connections (`ssh`)."""
    started = time.monotonic()
    parsed = [parse_ref(r) for r in refs]
    with open_side(source, "source", options.timeouts, ssh, options.local_engine) as src, ExitStack() as stack:
        src_info = src.connect()
        reporter.connected("source", source, src_info)
        hosts = [HostResult(d) for d in destinations]
        engines = [open_side(d, "destination", options.timeouts, ssh, options.local_engine) for d in destinations]
        for engine in engines:
            stack.callback(engine.close)
        reporters = [reporter_for(d) for d in destinations]
        # One copy at a time per destination, as for a single one; taken in one order, so that two
        # runs to overlapping sets of destinations cannot wait for each other.
        for i in sorted(range(len(destinations)), key=lambda i: str(destinations[i])):
            stack.enter_context(one_copy_at_a_time(destinations[i], reporters[i], options))

        def connect(i: int) -> None:
            try:
                info = engines[i].connect()
            except SocketMissing:
                node = node_instead(destinations[i], "destination", options.timeouts, ssh)
                if node is None:
                    raise
                engines[i], info = node, node.connect()
                reporters[i].note(found_node_note(node))
            for note in connect_notes(engines[i]):
                reporters[i].note(note)
            reporters[i].connected("destination", hosts[i].endpoint, info)

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
                shared = SharedSource(source, src_info, export, local_store(src))
                stop = threading.Event()

                def send(i: int) -> None:
                    host = hosts[i]
                    assert host.result is not None
                    try:
                        Transfer(shared, engines[i], reporters[i], options, host.result).deliver(exported, stop)
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
                fleet.store_bytes = shared.store_bytes
                fleet.streams = shared.streams
        elif not options.dry_run:

            def tag_only(i: int) -> None:
                result = hosts[i].result
                assert result is not None
                Transfer(ExportSource(src), engines[i], reporters[i], options, result).deliver()

            _each(hosts, tag_only, skip_failed=True)
        for host in hosts:
            if host.result is not None:
                host.result.elapsed = (host.finished or time.monotonic()) - host.started
    fleet.elapsed = time.monotonic() - started
    return fleet


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
            hosts[i].finished = time.monotonic()
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
