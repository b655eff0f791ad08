"""Where a transfer's images come from, behind one interface chosen once per transfer
(stores.py source_for):

    ExportSource    the source engine's own export, rewritten here
    StoreSource     an engine on this machine: the layers that travel read from its storage where
                    this process can read it (stores.py), else its export
    AgentSource     an engine reached over ssh: its storage or its export read and rewritten on its
                    host by the agent (remote/), else (no usable python3 there) the plain export
    SharedSource    one export (or store) shared by a fleet's destinations (shared_rewrite.py)

Each sends one rewrite into the destination's load (or loads, with checkpoints).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..endpoint import DEFAULT_UNIX_SOCKET, Endpoint
from ..engine.client import Engine
from ..engine.containerd.node import NodeEngine
from ..engine.protocol import DestinationEngine, SourceEngine
from ..errors import ArchiveError, D2DError, EngineError, PlatformError, StoreError, ZstdUnavailable
from ..formats.digests import human_size
from ..formats.entries import Progress, RewriteResult
from ..formats.prefetch import prefetch
from ..formats.rewrite import Rewriter
from ..formats.spec import StreamSpec, spec_to_json
from ..formats.stores.reading import Wanted
from ..model import EngineInfo, EngineKind, Platform
from .checkpoints import keep_partials
from .compress import Compression, accepts_zstd
from .job import CopyOptions, CopyResult, LayersFrom, RemoteFilter, Reporter
from .loading import Compressing, Outgoing, load_archives
from .plan import ImagePlan, TransferPlan
from .spool import private_dir

if TYPE_CHECKING:
    from ..remote.run import Agent, Relay

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


def wanted(plan: ImagePlan, kind: EngineKind, platform: Platform) -> Wanted:
    """What a store is asked for an image. In the containerd store an index needs the platform the
    copy wants (`--platform`, else the destination's), as its export gives it; one platform of an
    index chosen through API 1.49 is named by its own manifest already."""
    image = plan.source
    chosen = str(platform) if kind is EngineKind.CONTAINERD and not image.export_platform else None
    return Wanted(image.id, image.diff_ids, chosen)


def wanted_platform(job: Send) -> Platform:
    assert job.dst.info is not None
    return job.options.platform or job.dst.info.platform


def accepted(requested: Compression, dst: DestinationEngine) -> list[str]:
    """What the agent may compress with, best first: what the destination's load reads."""
    assert dst.info
    if requested is Compression.NONE:
        return ["none"]
    if requested is Compression.GZIP or not accepts_zstd(dst.info):
        return ["gzip"]
    return ["zstd", "gzip"]


def _timed(body: Relay, result: CopyResult, reporter: Reporter) -> Iterator[bytes]:
    """A load body from the agent, timed as a local one is (loading.py): the time it took to go out
    counts in the wire's rate; once it is out whole, the destination loads."""
    started = time.monotonic()
    yield from body
    result.sending_seconds += time.monotonic() - started
    if body.cut is None:
        reporter.phase("loading")


class AgentSource(ExportSource):
    """An engine reached over ssh: the layers that travel read from its storage at its host by the
    agent where the ssh user (or, with --source-sudo, root) can read it, else its export filtered
    there, when the host can run the agent (found out once: after a fallback the plain export is
    used for the rest of the run)."""

    def __init__(self, engine: Engine | NodeEngine) -> None:
        super().__init__(engine)
        self.agent_engine = engine
        self.unusable: str | None = None  # why the host cannot run the agent, once known
        self.sudo_refused = False  # `sudo -n` said no once: not asked again this run
        self.layout_noted = False

    def send(self, job: Send) -> RewriteResult:
        filtered = self._filtered(job, job.options.layers_from)
        return filtered if filtered is not None else super().send(job)

    def _filtered(self, job: Send, layers_from: LayersFrom) -> RewriteResult | None:
        """Filter at the source host and load what it sends; None: the plain stream instead."""
        from ..remote.run import AgentUnavailable, Relay

        src, dst, reporter, result = self.agent_engine, job.dst, job.reporter, job.result
        if job.options.remote_filter is RemoteFilter.NEVER:
            log.info("source %s: plain export stream (--remote-filter never)", src.endpoint)
            return None
        if self.unusable is not None:
            log.info("source %s: plain export stream (%s)", src.endpoint, self.unusable)
            return None
        assert src.info is not None and dst.info is not None
        images = list({p.source.id: p for p in job.plan.exported}.values())
        agent_job = self.agent_job(job, layers_from, images)
        try:
            agent, hello = self._start(job, agent_job)
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
        self._told(job, hello, {p.source.id: p.ref.raw for p in images})
        result.compression = Compression(hello.get("compression", "none"))

        def wire(n: int) -> None:
            result.wire_bytes += n
            reporter.wire_advanced(n)

        layers = job.plan.unique_layers()
        reporter.sending({d: lay.size for d, lay in layers.items() if d not in job.spec.skip}, result.compression)
        try:
            while True:
                body = Relay(agent, job.progress, wire)
                dst.load(_timed(body, result, reporter))
                if body.cut is None:
                    assert body.result is not None
                    reporter.phase("verifying")
                    return body.result
                keep_partials(dst, body.cut, reporter, result)
        except StoreError as exc:
            # Its last chunk was held back on the host: the load got a body cut off before its end.
            reporter.note(
                f"a layer in the storage of the source host {src.endpoint.host} is not what its engine registered "
                f"({exc.message}): nothing was loaded; sending {', '.join(p.ref.raw for p in images)} again from "
                "its export"
            )
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
            result.reading = {}
        return self._filtered(job, LayersFrom.EXPORT)

    def agent_job(self, job: Send, layers_from: LayersFrom, images: list[ImagePlan]) -> dict[str, Any]:
        """What the agent is told to read and write."""
        src = self.agent_engine
        assert src.info is not None

        def name(image: ImagePlan) -> str:  # what the export names it by
            return (image.source.export_as if job.platform else "") or image.source.id

        return {
            "socket": src.endpoint.path or DEFAULT_UNIX_SOCKET,
            "api": src.api_version,
            "kind": "podman" if src.info.kind is EngineKind.PODMAN else "docker",
            "names": job.ids,
            "spec": spec_to_json(job.spec),
            "compress": accepted(job.options.compress, job.dst),
            "layers_from": layers_from.value,
            "images": [{**wanted(p, src.info.kind, wanted_platform(job)).to_json(), "name": name(p)} for p in images],
            "platform": job.platform.as_json() if job.platform else None,
        }

    def _start(self, job: Send, agent_job: dict[str, Any]) -> tuple[Agent, dict[str, Any]]:
        """The agent, through `sudo -n` when asked (once refused, without it: one note)."""
        from ..remote.run import SudoRefused, start

        connection = self.agent_engine.ssh
        assert connection is not None
        if job.options.source_sudo and not self.sudo_refused:
            try:
                return start(connection, agent_job, sudo=True)
            except SudoRefused as exc:
                self.sudo_refused = True
                job.reporter.note(
                    f"--source-sudo: `sudo -n` on {self.endpoint.host} refused to run python3 ({exc}); the helper runs "
                    "as the ssh user (a sudoers rule `USER ALL=(root) NOPASSWD: /usr/bin/python3` allows it)"
                )
        return start(connection, agent_job)

    def _told(self, job: Send, hello: dict[str, Any], refs: dict[str, str]) -> None:
        """What the agent says of how it reads the layers: --debug, notes, and each layer's `read_from`."""
        where = self.endpoint
        if "store" not in hello:
            log.info("source %s: the helper reads its export", where)
            return
        read = hello.get("read_from") or {}
        if read:
            log.info("source %s: the helper on its host %s", where, hello["store"])
        else:
            log.info("source %s: the helper reads its export: %s", where, hello["store"])
        if hello.get("layout") and not self.layout_noted:
            self.layout_noted = True
            job.reporter.note(f"layers are read from the source's export: {hello['store']}")
        for image_id, reason in hello.get("refused") or []:
            job.reporter.note(
                f"layers of {refs.get(image_id, image_id)} not read from the source host's storage "
                f"({reason}): exporting it"
            )
        job.result.reading = {str(d): "agent-store" for d in read}

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


class NodeAgentSource(AgentSource):
    """A Kubernetes node reached over ssh: its `ctr images export` read and filtered on its host by
    the agent, so that only the layers the destination lacks cross the link (else, without a
    usable python3 there, the plain export, with one note)."""

    def agent_job(self, job: Send, layers_from: LayersFrom, images: list[ImagePlan]) -> dict[str, Any]:
        node = self.agent_engine
        assert isinstance(node, NodeEngine)
        return {
            "ctr": node.export_argv(job.ids, job.platform),
            "names": job.ids,
            "spec": spec_to_json(job.spec),
            "compress": accepted(job.options.compress, job.dst),
            "layers_from": LayersFrom.EXPORT.value,
            "images": [],
            "platform": None,
        }
