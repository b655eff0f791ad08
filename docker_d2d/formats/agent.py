"""The program run on the source host by its own python3 (3.8 or later, standard library only).

It reads the images on that host, runs the same rewrite the local side runs (drop the layers the
destination holds, write the destination's format), compresses the archive and writes it to stdout
in frames. It reads the layers that travel straight from the engine's storage where its user can
(stores/: found through the engine's /info, as the local side finds it), else the engine's export
(`GET /images/get` on the socket); images the store refuses come from the export into the same
archive. The frames:

    1 byte kind, 4 bytes big-endian length, payload
    kind D: a piece of the compressed archive (concatenated, they are the load body)
    kind E: one JSON event: hello (ready, which compression, how the layers are read), progress,
            result, error

Everything else the host's python prints (a traceback, "command not found") goes to stderr.
Closing the ssh channel closes our stdin: a thread waits for that and ends the process at
once (and the engine's export with it, since its socket closes), so Ctrl-C, a dropped link or
an error at the destination leaves nothing running here. Nothing is written to disk: the
only spool the reader may need is an unnamed temporary file, gone when the process ends.

Like everything in formats/, it travels (remote/pack.py): Python 3.8, standard library only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from typing import Any, BinaryIO
from urllib.parse import urlencode

from .compression import BodyCompressor
from .entries import Entry, cut_to_json, result_to_json
from .errors import D2DError
from .prefetch import prefetch
from .readers.export import ExportReader
from .rewrite import Rewrite
from .spec import StreamSpec, spec_from_json
from .stores.common import StoreError
from .stores.probe import Capability, probe
from .stores.reading import Opened, Wanted, entries, open_images, read_from

HEADER = struct.Struct(">cI")
DATA = b"D"
EVENT = b"E"
CHUNK = 1 << 20
EXIT_ABORTED = 75
LIBPOD_INFO = "/v4.0.0/libpod/info"  # as engine/client.py asks it


class Frames:
    """The framed stdout; events and data may come from two threads (the zstd reader)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.lock = threading.Lock()

    def data(self, payload: bytes) -> None:
        if payload:
            self._write(DATA, payload)

    def event(self, what: str, **fields: Any) -> None:
        fields["event"] = what
        self._write(EVENT, json.dumps(fields, separators=(",", ":")).encode())

    def _write(self, kind: bytes, payload: bytes) -> None:
        with self.lock:
            self.out.write(HEADER.pack(kind, len(payload)))
            self.out.write(payload)
            self.out.flush()


class Events:
    """The Rewriter's progress, batched into one event per output chunk."""

    def __init__(self, frames: Frames) -> None:
        self.frames = frames
        self.pending: list[list[Any]] = []

    def layer_skipped(self, key: str, size: int) -> None:
        self.pending.append(["skipped", key, size])

    def layer_started(self, key: str, size: int) -> None:
        self.pending.append(["started", key, size])

    def layer_advanced(self, key: str, nbytes: int) -> None:
        last = self.pending[-1] if self.pending else None
        if last is not None and last[0] == "advanced" and last[1] == key:
            last[2] += nbytes
        else:
            self.pending.append(["advanced", key, nbytes])

    def layer_finished(self, key: str) -> None:
        self.pending.append(["finished", key, 0])

    def flush(self) -> None:
        if self.pending:
            self.frames.event("progress", items=self.pending)
            self.pending = []


# --- compression: the first of the accepted kinds this host can do ----------------------------


class _Plain:
    name = "none"

    def __init__(self, frames: Frames) -> None:
        self.frames = frames

    def write(self, chunk: bytes | memoryview, stored: bool) -> None:
        self.frames.data(bytes(chunk))

    def close(self) -> None:
        pass


class _Compressing(_Plain):
    """gzip members or zstd frames; blobs compressed already, and data that does not shrink, go
    stored (compression.py, as in the client)."""

    def __init__(self, frames: Frames, kind: str) -> None:
        super().__init__(frames)
        self.name = kind
        self.compressor = BodyCompressor(kind)

    def write(self, chunk: bytes | memoryview, stored: bool) -> None:
        out = self.compressor.write(chunk, stored)
        started = time.perf_counter()
        self.frames.data(out)  # onto the ssh channel: how long it takes tells the link's speed
        self.compressor.sent(time.perf_counter() - started)

    def close(self) -> None:
        self.frames.data(self.compressor.close())


class _ZstdProcess(_Plain):
    """The host's `zstd` binary, fed through a pipe; a thread frames what it prints."""

    name = "zstd"

    def __init__(self, frames: Frames, binary: str, children: list[subprocess.Popen[bytes]]) -> None:
        super().__init__(frames)
        self.proc = subprocess.Popen([binary, "-3", "-T0", "-q", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        children.append(self.proc)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                data = self.proc.stdout.read1(CHUNK)  # type: ignore[attr-defined]
                if not data:
                    return
                self.frames.data(data)
        except BaseException as exc:  # re-raised by close()
            self.error = exc

    def write(self, chunk: bytes | memoryview, stored: bool) -> None:
        assert self.proc.stdin is not None
        if self.error is not None:
            raise self.error
        self.proc.stdin.write(chunk)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.thread.join()
        if self.error is not None:
            raise self.error
        if self.proc.wait() != 0:
            raise EngineFailed(f"zstd on the source host exited with status {self.proc.returncode}")


def compressor(accepted: list[str], frames: Frames, children: list[subprocess.Popen[bytes]]) -> _Plain:
    for kind in accepted:
        if kind == "zstd":
            try:
                import zstandard  # noqa: F401
            except ImportError:
                binary = shutil.which("zstd")
                if binary:
                    return _ZstdProcess(frames, binary, children)
                continue
            return _Compressing(frames, "zstd")
        if kind == "gzip":
            return _Compressing(frames, "gzip")
    return _Plain(frames)


# --- the engine on this host ---------------------------------------------------------------


class ConnectFailed(D2DError):
    """The engine socket cannot be opened from here (the local side then falls back)."""


class EngineFailed(D2DError):
    """The engine (or the host's zstd) failed: the local side raises it as its EngineError, or as
    ImageNotFound when `not_found`."""

    def __init__(self, message: str, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("docker")
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            raise ConnectFailed(f"cannot open the engine socket {self.socket_path}: {exc.strerror or exc}") from exc
        self.sock = sock


def get_json(path: str, url: str) -> Any:
    conn = _UnixHTTP(path)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status >= 400:
        raise EngineFailed(f"{url}: HTTP {resp.status}")
    return json.loads(body)


def export(path: str, api: str, names: list[str], platform: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """`platform` (API 1.48): one platform of a multi-platform image, as the local side asks for it."""
    conn = _UnixHTTP(path)
    query = [("names", n) for n in names]
    if platform:
        query.append(("platform", json.dumps(platform)))
        api = "1.48"
    conn.request("GET", f"/v{api}/images/get?" + urlencode(query))
    resp = conn.getresponse()
    if resp.status >= 400:
        body = resp.read().decode(errors="replace")
        try:
            message = json.loads(body).get("message") or body
        except ValueError:
            message = body.strip() or resp.reason
        raise EngineFailed(f"export: {message}", not_found=resp.status == 404)
    return resp


def _ctr_export(argv: list[str], stack: contextlib.ExitStack[Any]) -> Any:
    """The stdout of a node's `ctr ... images export - NAMES` (killed when the run ends)."""
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise ConnectFailed(f"cannot run {argv[0]}: {exc}") from exc

    def end() -> None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    stack.callback(end)
    assert proc.stdout is not None and proc.stderr is not None
    while True:
        data = proc.stdout.read(CHUNK)
        if not data:
            break
        yield data
    err = proc.stderr.read().decode(errors="replace").strip()
    if proc.wait() != 0:
        raise EngineFailed(f"ctr export: {err.splitlines()[-1] if err else 'failed'}", not_found="not found" in err)


def _body(resp: http.client.HTTPResponse) -> Any:
    while True:
        data = resp.read(CHUNK)
        if not data:
            return
        yield data


# --- the run ---------------------------------------------------------------------------------


def _watch_stdin(children: list[subprocess.Popen[bytes]]) -> None:
    """The local side never closes our stdin: EOF means the channel is gone. End everything now."""

    def watch() -> None:
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        for child in children:
            with contextlib.suppress(OSError):
                child.kill()
        os._exit(EXIT_ABORTED)

    threading.Thread(target=watch, name="d2d-stdin", daemon=True).start()


def capability(job: dict[str, Any]) -> Capability:
    """Whether this process reads the engine's storage, from what the engine says of itself."""
    try:
        info = get_json(job["socket"], f"/v{job['api']}/info")
        libpod = get_json(job["socket"], LIBPOD_INFO) if job.get("kind") == "podman" else None
    except (EngineFailed, ValueError, OSError, http.client.HTTPException) as exc:
        return Capability(None, f"the engine does not say where its storage is ({exc})")
    return probe(info, libpod)


def sources(
    job: dict[str, Any], spec: StreamSpec, stack: contextlib.ExitStack[Any]
) -> tuple[Iterable[Entry], dict[str, Any]]:
    """The entries to rewrite (from the store, the export, or both) and what the hello tells of them."""
    told: dict[str, Any] = {"read_from": {}, "refused": []}
    opened: list[Opened] = []
    names = list(job["names"])
    if job.get("layers_from") == "auto" and job.get("images"):
        found = capability(job)
        told.update(store=found.describe(), layout=found.layout)
        if found.store is not None:
            wanted = [Wanted.from_json(doc) for doc in job["images"]]
            opened, refused = open_images(found.store, wanted, spec.skip)
            told["read_from"] = read_from(opened)
            told["refused"] = [[r.image_id, r.reason] for r in refused]
            no = {r.image_id for r in refused}
            names = list(dict.fromkeys(doc["name"] for doc in job["images"] if doc["id"] in no))
    if not opened:
        names = list(job["names"])
    export_entries = None
    if job.get("ctr"):  # a Kubernetes node: its `ctr images export`, read as it comes
        chunks = stack.enter_context(prefetch(_ctr_export(job["ctr"], stack)))
        return ExportReader(chunks, spec), told
    if names:
        response = export(job["socket"], job["api"], names, job.get("platform"))
        chunks = stack.enter_context(prefetch(_body(response)))
        export_entries = ExportReader(chunks, spec)
    if not opened:
        assert export_entries is not None
        return export_entries, told
    return entries(opened, export_entries), told


def run(
    job: dict[str, Any],
    source: Iterable[Entry],
    frames: Frames,
    children: list[subprocess.Popen[bytes]],
    told: dict[str, Any],
) -> None:
    """Rewrite `source` into compressed frames. `told`: what the hello says of how the layers are read."""
    comp = compressor(job["compress"], frames, children)
    frames.event("hello", python=platform.python_version(), compression=comp.name, pid=os.getpid(), **told)
    events = Events(frames)
    rewriter = Rewrite(source, spec_from_json(job["spec"]), events)
    for archive in rewriter.archives():
        for chunk in archive:
            comp.write(chunk, rewriter.emitting_compressed)
            events.flush()
        comp.close()  # each archive is a load body of its own: a whole compressed stream
        events.flush()
        if archive.cut is not None:
            frames.event("cut", **cut_to_json(archive.cut))
            comp = compressor(job["compress"], frames, children)
    frames.event("result", result=result_to_json(rewriter.result))


def main(job: dict[str, Any]) -> None:
    frames = Frames(sys.stdout.buffer)
    children: list[subprocess.Popen[bytes]] = []
    _watch_stdin(children)
    try:
        try:
            with contextlib.ExitStack() as stack:
                source, told = sources(job, spec_from_json(job["spec"]), stack)
                run(job, source, frames, children, told)
        except ConnectFailed as exc:
            frames.event("error", kind="connect", message=exc.message)
            sys.exit(1)
        except D2DError as exc:
            kind = "not-found" if isinstance(exc, EngineFailed) and exc.not_found else type(exc).__name__
            if isinstance(exc, StoreError):
                kind = "StoreError"
            frames.event("error", kind=kind, message=exc.message)
            sys.exit(1)
        except (http.client.HTTPException, OSError) as exc:
            frames.event("error", kind="EngineError", message=f"the export stopped: {exc}")
            sys.exit(1)
        except Exception as exc:
            frames.event("error", kind="internal", message=f"{exc!r}", traceback=traceback.format_exc())
            sys.exit(1)
    except BrokenPipeError:
        os._exit(EXIT_ABORTED)  # the channel is gone; nobody is listening
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
