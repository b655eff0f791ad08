"""Where a transfer's images come from, behind one interface chosen once per transfer:

    ExportSource    the source engine's own export, rewritten here
    AgentSource     an engine reached over ssh: the export filtered and rewritten on its host by
                    the agent (remote/), else (no usable python3 there) the plain export
    SharedSource    one export shared by a fleet's destinations (shared_rewrite.py)

Each sends one rewrite of the export into the destination's load (or loads, with checkpoints).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from ..endpoint import DEFAULT_UNIX_SOCKET, Endpoint, Scheme
from ..engine.client import Engine
from ..engine.protocol import DestinationEngine, SourceEngine
from ..errors import ArchiveError, D2DError, EngineError, PlatformError, ZstdUnavailable
from ..formats.digests import human_size
from ..formats.entries import Progress, RewriteResult
from ..formats.prefetch import prefetch
from ..formats.rewrite import Rewriter
from ..formats.spec import StreamSpec, spec_to_json
from ..model import EngineInfo, EngineKind, Platform
from .checkpoints import keep_partials
from .compress import Compression, accepts_zstd
from .job import CopyOptions, CopyResult, RemoteFilter, Reporter
from .loading import Compressing, Outgoing, load_archives
from .plan import TransferPlan
from .spool import private_dir

log = logging.getLogger("docker_d2d.remote")


@dataclass
class Send:
    """One rewrite of the source's export into the destination: of the images `plan` exports
    (the export named `ids`, of `platform` if one), as `spec` says."""

    plan: TransferPlan
    ids: list[str]
    platform: Platform | None
    spec: StreamSpec
    dst: DestinationEngine
    reporter: Reporter
    options: CopyOptions
    result: CopyResult
    progress: Progress  # each layer's events (kept in `result` too)


class Source(Protocol):
    """Where the images come from."""

    @property
    def endpoint(self) -> Endpoint: ...

    @property
    def info(self) -> EngineInfo | None: ...

    def send(self, job: Send) -> RewriteResult:
        """Send, load (loading.py) and return what the rewrite wrote."""
        ...


class ExportSource:
    """The source engine's export, rewritten here."""

    def __init__(self, engine: SourceEngine) -> None:
        self.engine = engine

    @property
    def endpoint(self) -> Endpoint:
        return self.engine.endpoint

    @property
    def info(self) -> EngineInfo | None:
        return self.engine.info

    def send(self, job: Send) -> RewriteResult:
        return send_outgoing(self, job, self._outgoing(job))

    @contextmanager
    def _outgoing(self, job: Send) -> Iterator[Outgoing]:
        with (
            private_dir(job.options.spool_dir) as spool,
            self.engine.save(job.ids, job.platform) as raw,
            prefetch(raw) as chunks,
        ):
            yield Compressing(Rewriter(chunks, job.spec, job.progress, spool), job.result.compression)


def send_outgoing(src: Source, job: Send, outgoing: AbstractContextManager[Outgoing]) -> RewriteResult:
    """Load what a rewrite of the export writes (`outgoing`), for the export-based sources."""
    dst, reporter, result = job.dst, job.reporter, job.result
    try:
        with outgoing as sent:
            result.begun.append(sent.result)
            layers = job.plan.unique_layers()
            reporter.sending({d: lay.size for d, lay in layers.items() if d not in job.spec.skip}, result.compression)
            load_archives(src.endpoint, dst, sent, reporter, result)
    except (ArchiveError, EngineError) as exc:
        assert src.info and dst.info
        if src.info.kind is EngineKind.CONTAINERD and exc.side == "source" and _missing_content(exc):
            # A store without a platform's content (never pulled, or pulled lazily) exports an
            # archive without its blobs, or fails: say which platform and how to get it.
            wanted = job.options.platform or dst.info.platform
            refs = ", ".join(p.ref.raw for p in job.plan.exported)
            raise PlatformError(
                f"the store lacks content of {refs} for {wanted} ({exc.message}): pull it there with "
                f"`docker pull --platform {wanted} {job.plan.exported[0].ref.raw}` (a pull skips the blobs of "
                "layers the store has already: remove the images that hold them first)",
                side="source",
                endpoint=str(src.endpoint),
            ) from exc
        raise
    reporter.phase("verifying")
    return sent.result


def _missing_content(exc: D2DError) -> bool:
    return "not found" in exc.message or "lacks" in exc.message


def accepted(requested: Compression, dst: DestinationEngine) -> list[str]:
    """What the agent may compress with, best first: what the destination's load reads."""
    assert dst.info
    if requested is Compression.NONE:
        return ["none"]
    if requested is Compression.GZIP or not accepts_zstd(dst.info):
        return ["gzip"]
    return ["zstd", "gzip"]


class AgentSource(ExportSource):
    """An engine reached over ssh: its export filtered at its host by the agent, when the host can
    run it (found out once: after a fallback the plain export is used for the rest of the run)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.agent_engine = engine
        self.unusable: str | None = None  # why the host cannot run the agent, once known

    def send(self, job: Send) -> RewriteResult:
        if job.platform is None:  # the agent asks for the whole image
            filtered = self._filtered(job)
            if filtered is not None:
                return filtered
        return super().send(job)

    def _filtered(self, job: Send) -> RewriteResult | None:
        """Filter at the source host and load what it sends; None: the plain stream instead."""
        from ..remote.run import AgentUnavailable, Relay, start

        src, dst, reporter, result = self.agent_engine, job.dst, job.reporter, job.result
        if job.options.remote_filter is RemoteFilter.NEVER:
            log.info("source %s: plain export stream (--remote-filter never)", src.endpoint)
            return None
        if self.unusable is not None:
            log.info("source %s: plain export stream (%s)", src.endpoint, self.unusable)
            return None
        assert src.ssh is not None and dst.info is not None
        agent_job = {
            "socket": src.endpoint.path or DEFAULT_UNIX_SOCKET,
            "api": src.api_version,
            "names": job.ids,
            "spec": spec_to_json(job.spec),
            "compress": accepted(job.options.compress, dst),
        }
        try:
            agent, hello = start(src.ssh, agent_job)
        except AgentUnavailable as exc:
            self._fall_back(job, str(exc))
            return None
        except D2DError as exc:
            raise exc.with_side("source", str(src.endpoint)) from exc
        log.info(
            "source %s: filtering at the source host (python %s, %s on the wire)",
            src.endpoint,
            hello.get("python"),
            hello.get("compression"),
        )
        result.compression = Compression(hello.get("compression", "none"))

        def wire(n: int) -> None:
            result.wire_bytes += n

        try:
            while True:
                body = Relay(agent, job.progress, wire)
                dst.load(body)
                if body.cut is None:
                    assert body.result is not None
                    return body.result
                keep_partials(dst, body.cut, reporter, result)
        except ZstdUnavailable:
            # Its reader met a zstd blob (a containerd store's) it cannot hash or inflate. The load got a
            # body cut off before its end, so it made nothing (partial images of earlier checkpoints
            # stay, named): the plain stream starts over. Deciding up front would cost every pull from
            # such a store the plain stream, zstd blobs or not.
            why = "its python3 lacks the zstandard module, which the store's zstd layers need"
            remedy = f"Install the zstandard module for python3 on {src.endpoint.host} (Debian: python3-zstandard)"
            self._fall_back(job, why, remedy)
            return None
        except D2DError as exc:
            # Raised inside the body generator (the source's side) unless named already.
            raise exc.with_side("source", str(src.endpoint)) from exc
        finally:
            agent.channel.close()

    def _fall_back(self, job: Send, why: str, remedy: str = "") -> None:
        self.unusable = why
        log.info("source %s: plain export stream (%s)", self.endpoint, why)
        layers = job.plan.unique_layers().values()
        whole = sum(lay.size or 0 for lay in layers)
        host = self.endpoint.host
        remedy = remedy or f"Install python3 (3.8 or later) on {host}"
        job.reporter.note(
            f"the source host {host} cannot filter the export: {why}. The whole export (~ {human_size(whole)}) "
            f"crosses the link uncompressed instead of only the missing layers (~ {human_size(job.plan.bytes_to_send)} "
            f"before compression). {remedy} for the fast path, or pass --remote-filter never to choose the plain stream"
        )


def source_for(engine: Engine) -> Source:
    """The source a transfer from `engine` reads: through the agent when it is reached over ssh."""
    return AgentSource(engine) if engine.endpoint.scheme is Scheme.SSH else ExportSource(engine)
