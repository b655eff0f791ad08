"""One writer per output format: the archive each destination kind loads thin, as files.

    LegacyWriter    '<hex>/layer.tar' and '<config hex>.json', listed in manifest.json: what
                    graphdriver engines load, leaving out layers by chain
    OciWriter       an OCI layout (blobs, a manifest per image, index.json): what the containerd
                    store and Podman load, a left-out layer named by a descriptor it is held under

`TarOut` turns the files into the bytes of a tar stream.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .digests import sha256
from .entries import END, Barrier, Cut, End, LayerRecord, OutFile, RewriteResult, WrittenImage, document
from .oci import LAYOUT, MT_LAYER, MT_MANIFEST, Descriptor, blob_path, index, manifest, media_type
from .spec import OutputFormat, StreamSpec
from .tarstream import END_OF_ARCHIVE, file_header, padding

if TYPE_CHECKING:
    from .entries import Buffer, Item

    Writing = Generator[OutFile, None, WrittenImage]


def output_hex(digest: str, source_name: str) -> str:
    """The hex an output layer is named by: its digest's, else (a digest not known yet) its source name's."""
    return digest.split(":")[-1] or hashlib.sha256(source_name.encode()).hexdigest()


class Writer:
    """Layer files as they are sent, then each image's config (and manifest), then the list of
    images (`index`, which also starts the next archive's list)."""

    def layer_path(self, digest: str, source_name: str) -> str:
        raise NotImplementedError

    def image(self, config: bytes, diff_ids: tuple[str, ...], layers: Sequence[LayerRecord]) -> Writing:
        raise NotImplementedError

    def index(self) -> Iterator[OutFile]:
        raise NotImplementedError


class LegacyWriter(Writer):
    def __init__(self) -> None:
        self._manifest: list[dict[str, Any]] = []

    def layer_path(self, digest: str, source_name: str) -> str:
        return f"{output_hex(digest, source_name)}/layer.tar"

    def image(self, config: bytes, diff_ids: tuple[str, ...], layers: Sequence[LayerRecord]) -> Writing:
        config_digest = sha256(config)
        name = f"{config_digest[7:]}.json"
        yield document(name, config)
        self._manifest.append(
            {
                "Config": name,
                "RepoTags": None,
                # A left-out layer by its diff id: the engine looks for it by its chain.
                "Layers": [lay.out_name or f"{str(lay.diff_id)[7:]}/layer.tar" for lay in layers],
            }
        )
        return WrittenImage(config_digest, diff_ids)

    def index(self) -> Iterator[OutFile]:
        yield document("manifest.json", json.dumps(self._manifest).encode())
        self._manifest = []


class OciWriter(Writer):
    def __init__(self, spec: StreamSpec, result: RewriteResult) -> None:
        self.spec = spec
        self.result = result
        self._index: list[Descriptor] = []

    def layer_path(self, digest: str, source_name: str) -> str:
        return f"blobs/sha256/{output_hex(digest, source_name)}"

    def image(self, config: bytes, diff_ids: tuple[str, ...], layers: Sequence[LayerRecord]) -> Writing:
        config_digest = sha256(config)
        digest = yield from self.manifested(config, [self._descriptor(lay) for lay in layers])
        return WrittenImage(config_digest, diff_ids, digest)

    def manifested(
        self, config: bytes, layers: Sequence[Descriptor], *, compact: bool = True
    ) -> Generator[OutFile, None, str]:
        """An image's config blob and a manifest naming it and `layers`; returns the manifest's digest."""
        yield document(blob_path(sha256(config)), config)
        doc = manifest(config, layers, compact=compact)
        digest = sha256(doc)
        yield document(blob_path(digest), doc)
        self._index.append({"mediaType": MT_MANIFEST, "digest": digest, "size": len(doc)})
        return digest

    def index(self) -> Iterator[OutFile]:
        yield document("oci-layout", LAYOUT)
        yield document("index.json", index(self._index))
        self._index = []

    def _descriptor(self, layer: LayerRecord) -> Descriptor:
        if layer.out_name is not None:
            sent = {"mediaType": layer.media_type, "digest": layer.blob_digest or layer.diff_id, "size": layer.size}
            self.result.sent[str(layer.diff_id)] = sent
            return dict(sent)
        # Left out: name it by a digest the destination holds (see StreamSpec.left_out).
        diff = str(layer.diff_id)
        desc = self.spec.left_out.get(diff)
        if desc is None and self.spec.prefer_source:
            desc = self.result.source_layers.get(diff)
        if layer.absent and (desc is None or desc["digest"] == diff):
            # Only the destination can tell this size (StreamSpec.left_out); 0 is no tar's size.
            desc = {"mediaType": MT_LAYER, "digest": diff, "size": desc["size"] if desc else 0}
            if not desc["size"] and diff not in self.result.unsized:
                self.result.unsized.append(diff)
        elif desc is None or desc["digest"] == diff:
            size = layer.uncompressed_size if layer.uncompressed_size is not None else layer.size
            desc = {"mediaType": MT_LAYER, "digest": diff, "size": size}
        self.result.left_out[diff] = dict(desc)
        return dict(desc)


def writer_for(spec: StreamSpec, result: RewriteResult) -> Writer:
    return LegacyWriter() if spec.output is OutputFormat.LEGACY else OciWriter(spec, result)


class TarOut:
    """Files (and the markers between them) -> the bytes of a tar stream. `emitting_compressed`
    is true while the bytes going out belong to a blob the source holds compressed, so that wire
    compression can store them instead of compressing them again."""

    def __init__(self) -> None:
        self.emitting_compressed = False

    def items(self, items: Iterable[OutFile | Item | End]) -> Iterator[Item]:
        for item in items:
            if isinstance(item, OutFile):
                yield from self._file(item)
            elif isinstance(item, End):
                yield END_OF_ARCHIVE
            else:
                yield item

    def _file(self, out: OutFile) -> Iterator[Buffer]:
        yield file_header(out.name, out.size)
        first = out.sniff
        for chunk in out.body:
            if first:
                self.emitting_compressed = media_type(bytes(chunk[:4])) != MT_LAYER
                first = False
            yield chunk
        self.emitting_compressed = False
        yield padding(out.size)


def archive(files: Iterable[OutFile]) -> bytes:
    """A whole (small) archive of `files`, in memory."""
    parts = TarOut().items([*files, END])
    return b"".join(bytes(p) for p in parts if not isinstance(p, (Cut, Barrier)))


def oci_archive(config: bytes, layers: Sequence[Descriptor]) -> tuple[bytes, str]:
    """An OCI archive of one image that only names its layers (a probe: nothing of them is sent);
    returns it and the image's manifest digest."""
    writer = OciWriter(StreamSpec(OutputFormat.OCI, frozenset(), {}), RewriteResult())
    files: list[OutFile] = []
    image = writer.manifested(config, layers, compact=False)
    while True:
        try:
            files.append(next(image))
        except StopIteration as done:
            digest: str = done.value
            break
    return archive([*files, *writer.index()]), digest
