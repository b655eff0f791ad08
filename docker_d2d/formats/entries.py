"""Typed entries: what a source of image content yields, and what a rewrite writes and reports.

A source of entries (a save format's reader, readers/; or a reader of an engine's own storage,
stores/) yields, in any order:

    Layer       one layer's bytes and what is known of it before they are read: its diff id, blob
                digest, media type and size; `body` yields the bytes (read it whole, or not at all)
    Document    a metadata entry, read whole: a config, an OCI manifest or index, a v1 json
    Link        a name standing for another entry (a repeated layer in a legacy export)
    Expect      layers still to come whose names will not tell which they are

and last the Document `manifest.json`, as `docker save` writes it: for each image, the name of
its config Document and the names of its Layers (or Links), bottom first. That list is what the
writer turns into the destination's images, whatever the source.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Union

from .oci import MT_LAYER

if TYPE_CHECKING:  # aliases for the type checker only: this module also runs on the host's Python 3.8
    Buffer = bytes | memoryview  # output chunks: headers as bytes, bodies as views of the source's buffers


@dataclass
class Layer:
    name: str  # where it came from (an archive entry's name), as manifest.json names it
    size: int  # bytes `body` yields
    body: Iterator[memoryview]
    diff_id: str | None = None  # known before reading it (its name or the store tells), else learned
    digest: str | None = None  # the blob digest of those bytes, when known up front
    media_type: str | None = None  # when known up front; else told by the first bytes
    in_memory: bool = False  # `body` is one chunk already read: deciding costs no spool
    # Digests the source vouches for, (blob digest, diff id): the bytes must hash to them. A reader
    # of an engine's storage claims both; an export's entry name may claim one.
    claimed: tuple[str | None, str | None] = (None, None)


@dataclass(frozen=True)
class Document:
    name: str
    data: bytes


@dataclass(frozen=True)
class Link:
    name: str
    target: str  # the entry it stands for, as a path from the archive's root


@dataclass(frozen=True)
class Expect:
    """Layers that will come under names that do not tell which they are (one entry each)."""

    diff_ids: tuple[str, ...]


Entry = Union[Layer, Document, Link, Expect]  # noqa: UP007 - a runtime alias, on Python 3.8 too


class Progress(Protocol):
    def layer_skipped(self, key: str, size: int) -> None: ...
    def layer_started(self, key: str, size: int) -> None: ...
    def layer_advanced(self, key: str, nbytes: int) -> None: ...
    def layer_finished(self, key: str) -> None: ...


class NoProgress:
    def layer_skipped(self, key: str, size: int) -> None:
        pass

    def layer_started(self, key: str, size: int) -> None:
        pass

    def layer_advanced(self, key: str, nbytes: int) -> None:
        pass

    def layer_finished(self, key: str) -> None:
        pass


@dataclass
class LayerRecord:
    """What became of one layer of the source: left out (`out_name` None) or sent under `out_name`."""

    source_name: str
    size: int  # as the source holds it; as sent, for a blob sent decompressed
    diff_id: str | None
    blob_digest: str | None  # digest of the bytes we send (compressed blobs keep theirs)
    media_type: str = MT_LAYER
    uncompressed_size: int | None = None
    out_name: str | None = None  # None: left out
    # A left-out layer the source did not carry, or carried only compressed and was not read: its
    # uncompressed size is unknown here.
    absent: bool = False


@dataclass(frozen=True)
class OutFile:
    """One entry of the output archive. `sniff`: a layer's bytes as the source holds them, which
    may be compressed already (told by their first bytes: wire compression then stores them)."""

    name: str
    size: int
    body: Iterable[Buffer]
    sniff: bool = False


def document(name: str, data: bytes) -> OutFile:
    return OutFile(name, len(data), (data,))


@dataclass(frozen=True)
class WrittenImage:
    config_digest: str
    diff_ids: tuple[str, ...]
    manifest_digest: str | None = None  # OCI output only

    def loaded_as(self, store: bool) -> str:
        """The id the destination gives it: the manifest digest in a containerd store."""
        return (self.manifest_digest if store else None) or self.config_digest


@dataclass(frozen=True)
class Cut:
    """The end of one archive of a resumable stream: the partial images it holds, each with the
    source image it is the first layers of."""

    images: tuple[WrittenImage, ...]
    sources: tuple[str, ...]


class Barrier:
    """In a checkpointed stream, before an archive's image entries: what comes next names layers
    that earlier archives carried, so their loads must be done (see rewrite.Archive.barrier)."""


BARRIER = Barrier()


class End:
    """The end of one archive."""


END = End()
Item = Union["Buffer", Cut, Barrier]
if TYPE_CHECKING:
    Output = OutFile | Item | End  # what a rewrite yields before its files become tar bytes


@dataclass
class RewriteResult:
    images: list[WrittenImage] = field(default_factory=list)
    partials: list[WrittenImage] = field(default_factory=list)  # written at checkpoints
    # source manifest or index digest -> config digest (the containerd store names images by manifest)
    aliases: dict[str, str] = field(default_factory=dict)
    # diff id -> the source manifest's descriptor of that layer (OCI-layout exports)
    source_layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # diff id -> the descriptor an output manifest named a left-out layer by, and a sent one
    left_out: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Left-out layers the export did not carry, named by their diff id with no size known (0): a
    # containerd store exports a blob by its manifest's size, so it could not export such an image.
    unsized: list[str] = field(default_factory=list)
    layers_sent: int = 0
    layers_skipped: int = 0
    bytes_sent: int = 0
    bytes_skipped: int = 0
    spooled_bytes: int = 0


def result_to_json(result: RewriteResult) -> dict[str, Any]:
    return asdict(result)


def written_from_json(images: list[dict[str, Any]]) -> list[WrittenImage]:
    return [WrittenImage(i["config_digest"], tuple(i["diff_ids"]), i.get("manifest_digest")) for i in images]


def result_from_json(doc: dict[str, Any]) -> RewriteResult:
    fields = {k: v for k, v in doc.items() if k not in ("images", "partials")}
    return RewriteResult(images=written_from_json(doc["images"]), partials=written_from_json(doc["partials"]), **fields)


def cut_to_json(cut: Cut) -> dict[str, Any]:
    return {"images": [asdict(i) for i in cut.images], "sources": list(cut.sources)}


def cut_from_json(doc: dict[str, Any]) -> Cut:
    return Cut(tuple(written_from_json(doc["images"])), tuple(doc["sources"]))
