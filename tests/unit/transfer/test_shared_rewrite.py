"""A fleet's destinations that would be sent the same bytes read one shared rewrite: each gets
exactly what its own rewrite would have sent, archive by archive, with its own progress, at its
own pace; different streams get rewrites of their own; an error reaches every reader."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import zstandard

from docker_d2d.endpoint import parse_endpoint
from docker_d2d.errors import Cancelled, EngineError
from docker_d2d.formats.entries import Cut
from docker_d2d.formats.rewrite import Rewriter
from docker_d2d.formats.spec import OutputFormat, StreamSpec
from docker_d2d.model import Platform
from docker_d2d.transfer.compress import Compression
from docker_d2d.transfer.loading import Compressing, Outgoing
from docker_d2d.transfer.shared_export import SharedExport
from docker_d2d.transfer.shared_rewrite import SharedSource
from tests.harness.tars import chunks
from tests.unit.formats.test_checkpoint import DIFFS, export, spec

DATA = export([3, 0, 4, 1, 2])  # out of order: checkpointed rewrites hold layers back


class Exporter:
    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        self.data, self.fail_after, self.saves = data, fail_after, 0

    @contextmanager
    def save(self, names: Sequence[str], platform: Platform | None = None) -> Iterator[Iterator[bytes]]:
        self.saves += 1

        def body() -> Iterator[bytes]:
            for i, chunk in enumerate(chunks(self.data)):
                if self.fail_after is not None and i == self.fail_after:
                    raise EngineError("the export broke off", side="source")
                yield chunk

        yield body()


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    def merged(self) -> list[tuple[str, str, int]]:
        """Consecutive advances of one layer as one: how a rewrite's input is cut into chunks
        differs between the source's own export and a spool."""
        out: list[tuple[str, str, int]] = []
        for what, key, n in self.seen:
            if what == "advanced" and out and out[-1][:2] == (what, key):
                out[-1] = (what, key, out[-1][2] + n)
            else:
                out.append((what, key, n))
        return out

    def layer_skipped(self, key: str, size: int) -> None:
        self.seen.append(("skipped", key, size))

    def layer_started(self, key: str, size: int) -> None:
        self.seen.append(("started", key, size))

    def layer_advanced(self, key: str, nbytes: int) -> None:
        self.seen.append(("advanced", key, nbytes))

    def layer_finished(self, key: str) -> None:
        self.seen.append(("finished", key, 0))


def plain(body: bytes, how: Compression) -> bytes:
    if how is Compression.ZSTD:
        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return body


def read(outgoing: Outgoing, how: Compression) -> tuple[list[tuple[bytes, Cut | None]], int]:
    """Every archive's (uncompressed) bytes and cut; and how often a barrier was waited for."""
    out: list[tuple[bytes, Cut | None]] = []
    barriers = 0
    for archive in outgoing.archives():

        def barrier() -> None:
            nonlocal barriers
            barriers += 1

        archive.barrier = barrier
        body = b"".join(bytes(c) for c in archive)
        out.append((plain(body, how), archive.cut))
    return out, barriers


def own(
    s: StreamSpec, how: Compression, tmp_path: Path
) -> tuple[list[tuple[bytes, Cut | None]], int, Events, list[object]]:
    events = Events()
    outgoing = Compressing(Rewriter(chunks(DATA), s, events, tmp_path), how)
    archives, barriers = read(outgoing, how)
    return archives, barriers, events, list(outgoing.result.images)


def shared_source(exporter: Exporter, tmp_path: Path) -> tuple[SharedSource, SharedExport]:
    export = SharedExport(exporter, ["x"], tmp_path)
    return SharedSource(parse_endpoint("unix:///x.sock"), None, export), export


@pytest.mark.parametrize("checkpoint", [None, 1], ids=["one-archive", "checkpointed"])
@pytest.mark.parametrize("how", [Compression.NONE, Compression.ZSTD])
def test_each_reader_gets_what_its_own_rewrite_would_send(
    checkpoint: int | None, how: Compression, tmp_path: Path
) -> None:
    s = spec(OutputFormat.LEGACY, frozenset({DIFFS[0]}), checkpoint=checkpoint)
    expected, expected_barriers, expected_events, expected_images = own(s, how, tmp_path)
    exporter = Exporter(DATA)
    source, export = shared_source(exporter, tmp_path)
    with export:
        readers = [(source.outgoing(s, how, events, tmp_path), events) for events in (Events(), Events(), Events())]
        results: list[object] = [None] * 3

        def go(i: int) -> None:
            results[i] = read(readers[i][0], how)

        threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        source.close()
    assert exporter.saves == 1
    assert len(expected) > 1 or checkpoint is None
    for (outgoing, events), got in zip(readers, results):
        assert got == (expected, expected_barriers)
        assert events.merged() == expected_events.merged()
        assert expected_images and outgoing.result.images == expected_images


def test_a_reader_may_start_after_another_has_read_everything(tmp_path: Path) -> None:
    s = spec(OutputFormat.OCI, checkpoint=None)
    expected = own(s, Compression.ZSTD, tmp_path)[0]
    source, export = shared_source(Exporter(DATA), tmp_path)
    with export:
        first = read(source.outgoing(s, Compression.ZSTD, Events(), tmp_path), Compression.ZSTD)
        second = read(source.outgoing(s, Compression.ZSTD, Events(), tmp_path), Compression.ZSTD)
        source.close()
    assert first[0] == second[0] == expected


def test_different_streams_get_rewrites_of_their_own(tmp_path: Path) -> None:
    legacy = spec(OutputFormat.LEGACY, checkpoint=None)
    thin = spec(OutputFormat.LEGACY, frozenset({DIFFS[1]}), checkpoint=None)
    exporter = Exporter(DATA)
    source, export = shared_source(exporter, tmp_path)
    with export:
        got = {
            name: read(source.outgoing(s, how, Events(), tmp_path), how)[0]
            for name, s, how in [
                ("legacy", legacy, Compression.NONE),
                ("thin", thin, Compression.NONE),
                ("legacy-gzip", legacy, Compression.GZIP),
            ]
        }
        assert len(source._rewrites) == 3
        source.close()
    assert exporter.saves == 1
    assert got["legacy"] == own(legacy, Compression.NONE, tmp_path)[0]
    assert got["thin"] == own(thin, Compression.NONE, tmp_path)[0]
    assert len(got["thin"][0][0]) < len(got["legacy"][0][0])


def test_an_export_error_reaches_every_reader(tmp_path: Path) -> None:
    s = spec(OutputFormat.LEGACY, checkpoint=None)
    source, export = shared_source(Exporter(DATA, fail_after=5), tmp_path)
    with export:
        for _ in range(2):
            with pytest.raises(EngineError, match="broke off"):
                read(source.outgoing(s, Compression.NONE, Events(), tmp_path), Compression.NONE)
        source.close()


def test_cancelling_the_export_stops_a_waiting_reader(tmp_path: Path) -> None:
    gate = threading.Event()

    class Slow(Exporter):
        @contextmanager
        def save(self, names: Sequence[str], platform: Platform | None = None) -> Iterator[Iterator[bytes]]:
            def body() -> Iterator[bytes]:
                yield DATA[:1000]
                gate.wait(10)

            yield body()

    s = spec(OutputFormat.LEGACY, checkpoint=None)
    source, export = shared_source(Slow(DATA), tmp_path)
    with export:
        failed: list[BaseException] = []

        def go() -> None:
            try:
                read(source.outgoing(s, Compression.NONE, Events(), tmp_path), Compression.NONE)
            except BaseException as exc:
                failed.append(exc)

        reader = threading.Thread(target=go)
        reader.start()
        export.cancel()
        reader.join(10)
        gate.set()
        source.close()
    assert not reader.is_alive()
    assert failed and isinstance(failed[0], Cancelled)
