"""The source engine's own storage in place of its export (#18): where this process can read the
store (formats/stores/probe.py, from what the engine says in /info and Podman's /libpod/info), the
thin archive is written from the configs (and manifests) and only the layers that travel, read
straight from the store; the engine exports nothing.

Decided once per source engine (the probe), then per image (formats/stores/reading.py): an image
the store cannot give (a layout we do not read, a file we cannot read, a blob it lacks) comes from
the engine's export into the same archive, with one note. Each layer is verified against its
digest as it passes, and its last chunk is held back until it is: a byte changed behind the
engine's back fails the load with nothing loaded, and the images are sent again from the export,
with one note.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

from ..endpoint import Scheme
from ..engine.client import Engine
from ..engine.containerd.node import NodeEngine
from ..errors import EngineError, StoreError
from ..formats.entries import RewriteResult
from ..formats.prefetch import prefetch
from ..formats.readers.export import ExportReader
from ..formats.rewrite import Rewrite
from ..formats.stores.common import Store
from ..formats.stores.probe import Capability, probe
from ..formats.stores.reading import Opened, Refused, entries, open_images, read_from
from ..model import EngineInfo
from .compress import far
from .job import LayersFrom
from .loading import Compressing, Outgoing
from .sources import AgentSource, ExportSource, NodeAgentSource, Send, Source, send_outgoing, wanted, wanted_platform
from .spool import private_dir

log = logging.getLogger("docker_d2d.transfer")


class StoreSource(ExportSource):
    """A source engine on this machine: the layers that travel from its storage where it can be
    read here, else (and with --layers-from export) its export."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.store_engine = engine
        self._capability: Capability | None = None
        self._noted = False  # the note that the store's layout is not read: once a run

    def capability(self) -> Capability:
        """Whether this process reads the engine's storage: asked once per run."""
        if self._capability is None:
            try:
                info, libpod = self.store_engine.storage_info()
                self._capability = probe(info, libpod)
            except EngineError as exc:
                self._capability = Capability(None, f"the engine does not say where its storage is ({exc.message})")
        return self._capability

    def send(self, job: Send) -> RewriteResult:
        store = self.readable(job)
        if store is None:
            return super().send(job)
        opened, refused = self.open(store, job)
        if not opened:
            self.told(job, opened, refused)
            return super().send(job)
        self.told(job, opened, refused)
        try:
            return send_outgoing(self, job, self._from_store(job, opened, refused))
        except StoreError as exc:
            self.mismatched(job, store, exc)
        finally:
            job.result.reading = {}
        return super().send(job)

    @property
    def source_info(self) -> EngineInfo:
        assert self.engine.info is not None
        return self.engine.info

    def readable(self, job: Send) -> Store | None:
        """The store to read, or None (then why, with --debug, and a note where its layout is one
        docker-d2d does not read)."""
        where = self.endpoint
        if job.options.layers_from is LayersFrom.EXPORT:
            log.info("source %s: layers from its export (--layers-from export)", where)
            return None
        capability = self.capability()
        if capability.store is not None:
            log.info("source %s: %s", where, capability.describe())
            return capability.store
        log.info("source %s: layers from its export: %s", where, capability.describe())
        if capability.layout and not self._noted:
            self._noted = True
            job.reporter.note(f"layers are read from the source's export: {capability.describe()}")
        return None

    def open(self, store: Store, job: Send) -> tuple[list[Opened], list[Refused]]:
        """The job's images from the store (opened before the stream), and those it refuses."""
        images = list({p.source.id: p for p in job.plan.exported}.values())
        kind, platform = self.source_info.kind, wanted_platform(job)
        return open_images(store, [wanted(p, kind, platform) for p in images], job.spec.skip)

    def told(self, job: Send, opened: Sequence[Opened], refused: Sequence[Refused]) -> None:
        """One note per image the store refused; how each layer that travels is read."""
        refs = {p.source.id: p.ref.raw for p in job.plan.exported}
        origin = self.capability().store
        for image in refused:
            job.reporter.note(
                f"layers of {refs.get(image.image_id, image.image_id)} not read from the source's "
                f"{origin.origin if origin else 'storage'} ({image.reason}): exporting it"
            )
        job.result.reading = {diff: "store" for diff in read_from(opened)}

    def mismatched(self, job: Send, store: Store, exc: StoreError) -> None:
        # The last chunk of the layer was held back: the archive never ended, nothing was loaded.
        refs = ", ".join(dict.fromkeys(p.ref.raw for p in job.plan.exported))
        job.reporter.note(
            f"a layer in the source's {store.origin} is not what the engine registered ({exc.message}): "
            f"nothing was loaded; sending {refs} again from the source's export"
        )
        job.result.reading = {}

    @contextmanager
    def _from_store(self, job: Send, opened: Sequence[Opened], refused: Sequence[Refused]) -> Iterator[Outgoing]:
        """The rewrite of the store's images; the export of those it refused goes into the same archive."""
        with private_dir(job.options.spool_dir) as spool, ExitStack() as stack:
            export = None
            if refused:
                names = {i.image_id for i in refused}
                ids = [
                    (p.source.export_as if job.platform else "") or p.source.id
                    for p in job.plan.exported
                    if p.source.id in names
                ]
                raw = stack.enter_context(self.engine.save(list(dict.fromkeys(ids)), job.platform))
                export = ExportReader(stack.enter_context(prefetch(raw)), job.spec)
            rewrite = Rewrite(entries(opened, export), job.spec, job.progress, spool)
            yield Compressing(rewrite, job.result.compression)


def local_store(engine: Engine | NodeEngine) -> StoreSource | None:
    """A source engine whose storage may be on this machine (a unix socket, tcp on loopback)."""
    if isinstance(engine, NodeEngine):
        return None
    return None if far(engine.endpoint) else StoreSource(engine)


def source_for(engine: Engine | NodeEngine) -> Source:
    """The source a transfer from `engine` reads: through the agent when it is reached over ssh, its
    storage where it may be on this machine (a unix socket, tcp on loopback), else its export (a
    node's: `ctr images export`)."""
    if isinstance(engine, NodeEngine):
        return NodeAgentSource(engine) if engine.ssh is not None else ExportSource(engine)
    if engine.endpoint.scheme is Scheme.SSH:
        return AgentSource(engine)
    return local_store(engine) or ExportSource(engine)
