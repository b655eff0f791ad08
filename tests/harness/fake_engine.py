"""A fake Docker engine on a unix socket, for hostile-source tests (and slow streams).

It answers the calls docker-d2d makes of a SOURCE engine, from fixed data:

    GET/HEAD /_ping, GET /version, /info, /images/json, /images/{name}/json,
    /images/{name}/history, /images/get?names=...

with or without a `/v1.xx` prefix. Typical use, as the source of a copy to a real engine:

    images, version, info, archive = mirror(real_engine, "app:1")   # what the real engine says
    with FakeEngine(tmp_path / "fake.sock", images, export=lambda names: [flip(archive)],
                    version=version, info=info) as fake:
        run_d2d("copy", "-s", fake.host, "-d", destination.host, "app:1")

`export(names)` returns the body of `/images/get` as an iterable of byte chunks; it is consumed
lazily and written out with chunked encoding as it comes, so it may be endless or slow
(sleep between chunks). The iteration stops when the client goes away. `requests` records
each request's method and path, for assertions. Crafting helpers for archives are below.
"""

from __future__ import annotations

import io
import json
import re
import socketserver
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

DOCKER26_VERSION: dict[str, Any] = {
    "Version": "26.1.5",
    "ApiVersion": "1.45",
    "MinAPIVersion": "1.24",
    "Os": "linux",
    "Arch": "amd64",
    "Components": [{"Name": "Engine", "Version": "26.1.5"}],
}
OVERLAY2_INFO: dict[str, Any] = {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]}

Export = Callable[[list[str]], Iterable[bytes]]


@dataclass
class FakeImage:
    inspect: dict[str, Any]  # the /images/{name}/json answer
    history: list[dict[str, Any]] = field(default_factory=list)  # the /images/{name}/history answer

    def matches(self, name: str) -> bool:
        image_id = self.inspect["Id"]
        tags = self.inspect.get("RepoTags") or []
        full = name if ":" in name.split("/")[-1] or name.startswith("sha256:") else f"{name}:latest"
        return name in (image_id, image_id.removeprefix("sha256:")) or full in tags or name in tags


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128  # as a real engine's: the client's concurrent inspects must not overrun it
    fake: FakeEngine


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet; unix sockets have no client address to log anyway

    def address_string(self) -> str:
        return "unix"

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        path = re.sub(r"^/v[0-9.]+", "", unquote(url.path))
        query = parse_qs(url.query)
        fake.requests.append(f"{self.command} {path}")
        if path == "/_ping":
            return self._send(200, b"OK", "text/plain")
        if path == "/version":
            return self._json(fake.version)
        if path == "/info":
            return self._json(fake.info)
        if path == "/images/json":
            return self._json([{"Id": i.inspect["Id"], "RepoTags": i.inspect.get("RepoTags")} for i in fake.images])
        if path == "/images/get":
            return self._stream(fake.export(query.get("names", [])))
        m = re.fullmatch(r"/images/(.+)/(json|history)", path)
        if m:
            image = fake.find(m[1])
            if image is None:
                return self._json({"message": f"No such image: {m[1]}"}, 404)
            return self._json(image.inspect if m[2] == "json" else image.history)
        return self._json({"message": f"page not found: {path}"}, 404)

    def do_POST(self) -> None:
        self.server.fake.requests.append(f"POST {self.path}")
        self._json({"message": "this fake engine only serves as a source"}, 501)

    def _json(self, doc: Any, status: int = 200) -> None:
        self._send(status, json.dumps(doc).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Api-Version", self.server.fake.version.get("ApiVersion", "1.45"))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stream(self, chunks: Iterable[bytes]) -> None:
        self.send_response(200)
        self.send_header("Api-Version", self.server.fake.version.get("ApiVersion", "1.45"))
        self.send_header("Content-Type", "application/x-tar")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for chunk in chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away: stop producing


class FakeEngine:
    """See the module docstring. Use as a context manager (or start()/stop())."""

    def __init__(
        self,
        socket: Path,
        images: list[FakeImage],
        export: Export,
        version: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.socket = socket
        self.images = images
        self.export = export
        self.version = version or DOCKER26_VERSION
        self.info = info or OVERLAY2_INFO
        self.requests: list[str] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def find(self, name: str) -> FakeImage | None:
        return next((i for i in self.images if i.matches(name)), None)

    def start(self) -> FakeEngine:
        if self.socket.exists():
            self.socket.unlink()
        self._server = _Server(str(self.socket), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.socket.exists():
            self.socket.unlink()

    def __enter__(self) -> FakeEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def mirror(engine_socket: Path, *refs: str) -> tuple[list[FakeImage], dict[str, Any], dict[str, Any], bytes]:
    """What a real engine says about `refs`: their inspect and history, its version and info, and
    its export of them (whole, in memory: use small images)."""
    with httpx.Client(
        transport=httpx.HTTPTransport(uds=str(engine_socket)), base_url="http://engine", timeout=120
    ) as c:
        images = []
        for ref in refs:
            inspect = c.get(f"/images/{ref}/json").raise_for_status().json()
            history = c.get(f"/images/{ref}/history").raise_for_status().json()
            images.append(FakeImage(inspect, history))
        version = c.get("/version").raise_for_status().json()
        info = c.get("/info").raise_for_status().json()
        archive = c.get("/images/get", params=[("names", r) for r in refs]).raise_for_status().content
    return images, version, info, archive


# --- crafting archives ----------------------------------------------------------------------------


def members(archive: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]  # type: ignore[union-attr]


def rebuild(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, body in entries:
            if body is not None:
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    return out.getvalue()


def config_names(archive: bytes) -> list[str]:
    manifest = next(body for m, body in members(archive) if m.name == "manifest.json")
    assert manifest is not None
    return [item["Config"] for item in json.loads(manifest)]


def replace_entry(archive: bytes, name: str, change: Callable[[bytes], bytes]) -> bytes:
    """The same archive with one entry's body changed (its name kept)."""
    entries = members(archive)
    assert any(m.name == name for m, _ in entries), name
    return rebuild([(m, change(body) if m.name == name and body is not None else body) for m, body in entries])


def flip_config(archive: bytes) -> bytes:
    """One byte of the (first) image config changed, the way a bad link or proxy would:
    '"architecture":"amd64"' becomes "amd65"."""
    name = config_names(archive)[0]
    return replace_entry(archive, name, lambda b: b.replace(b'"architecture":"amd64"', b'"architecture":"amd65"', 1))


def first_layer_offset(archive: bytes) -> tuple[str, int]:
    """The first layer entry's name and the offset of its header in the archive."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for m in tar.getmembers():
            if m.isfile() and m.size > 4096 and (m.name.endswith(".tar") or m.name.startswith("blobs/")):
                return m.name, m.offset
    raise AssertionError("no layer in the archive")


def header(name: str, size: int, type: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = type
    return info.tobuf(tarfile.PAX_FORMAT)  # a size past 8 GiB goes into a PAX record


def zeros_forever(chunk: int = 1 << 20) -> Iterator[bytes]:
    block = b"\0" * chunk
    while True:
        yield block


def endless_layer(archive: bytes, size: int = 1 << 40) -> Iterator[bytes]:
    """The real archive up to its first layer, then that layer's header claiming `size` bytes,
    then zeros without end."""
    name, offset = first_layer_offset(archive)
    yield archive[:offset]
    yield header(name, size)
    yield from zeros_forever()


def huge_pax_header(archive: bytes, size: int = 1 << 30) -> Iterator[bytes]:
    """A PAX extended header claiming `size` bytes before the first entry, then endless records."""
    yield header("PaxHeaders/x", size, tarfile.XHDTYPE)[:512]
    while True:
        yield b"30 comment=" + b"x" * 18 + b"\n"


def huge_metadata(archive: bytes, size: int = 1 << 30) -> Iterator[bytes]:
    """A 'repositories' entry claiming `size` bytes before the real archive, then endless zeros."""
    yield header("repositories", size)
    yield from zeros_forever()


def malformed_pax(archive: bytes) -> bytes:
    """A PAX header whose record lengths lie, before the real archive."""
    records = b"99 path=short\n"
    return header("PaxHeaders/x", len(records), tarfile.XHDTYPE)[:512] + records.ljust(512, b"\0") + archive


def malformed_manifest(archive: bytes) -> bytes:
    return replace_entry(archive, "manifest.json", lambda _: b'{"Config": "not a list"}')


def malformed_config(archive: bytes) -> tuple[bytes, str]:
    """The config replaced by a JSON document without rootfs, under a name that matches it and with
    manifest.json pointing to it; returns the archive and the new config's digest, which the fake
    engine must then give as the image's id (so that the config is the promised one)."""
    import hashlib

    bad = b'{"architecture": "amd64", "rootfs": null}'
    digest = "sha256:" + hashlib.sha256(bad).hexdigest()
    name = config_names(archive)[0]
    new = f"blobs/sha256/{digest[7:]}" if name.startswith("blobs/") else f"{digest[7:]}.json"
    entries = []
    for m, body in members(archive):
        if m.name == name:
            m.name, body = new, bad
        elif m.name == "manifest.json" and body is not None:
            body = body.replace(name.encode(), new.encode())
        entries.append((m, body))
    return rebuild(entries), digest
