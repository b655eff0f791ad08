"""The Engine API client: the calls docker-d2d makes to a Docker-compatible engine.

Works the same against Docker (graphdriver or containerd image store) and Podman's
compatible API; `EngineInfo.kind` says which one answered.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from .endpoint import Endpoint, Scheme
from .errors import ConnectError, D2DError, EngineError, ImageNotFound
from .model import EngineInfo, EngineKind, ImageInfo
from .transport import make_transport

# The newest API version we were tested against; older engines get their own
# version, as the docker CLI negotiates it.
MAX_API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
CHUNK = 1 << 20
E = TypeVar("E", bound=D2DError)


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def negotiate_version(server: str | None, override: str | None = None) -> str:
    if override:
        return override
    if not server:
        return MIN_API_VERSION
    return min(server, MAX_API_VERSION, key=_version_tuple)


def _tls_cause(text: str) -> str | None:
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS: the engine's certificate is not trusted by the CA given ({text})"
    if "CERTIFICATE_REQUIRED" in text or "BAD_CERTIFICATE" in text or "UNKNOWN_CA" in text:
        return f"TLS: the engine refused our client certificate (give --tlscert/--tlskey it trusts) ({text})"
    if "SSL" in text or "WRONG_VERSION_NUMBER" in text:
        return f"TLS handshake failed ({text}); is the engine listening with TLS on that port?"
    return None


def _connect_cause(exc: BaseException, endpoint: Endpoint) -> str:
    text = str(exc)
    where = endpoint.path or f"{endpoint.host}:{endpoint.port}"
    if endpoint.scheme is Scheme.SSH:
        return text  # the ssh layer words its own causes
    tls = _tls_cause(text)
    if tls:
        return tls
    if "Permission denied" in text:
        return f"permission denied on {where} (is your user allowed to use this engine?)"
    if "No such file" in text:
        return f"no engine socket at {where} (is the engine running?)"
    if "refused" in text:
        return f"connection refused by {where} (is the engine running and listening there?)"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out connecting to {where}"
    return f"cannot connect to {where}: {text or type(exc).__name__}"


class Engine:
    """A connected engine. Use as a context manager; `side` names it in messages."""

    def __init__(self, endpoint: Endpoint, side: str) -> None:
        self.endpoint = endpoint
        self.side = side
        try:
            transport, base = make_transport(endpoint)
        except D2DError as exc:
            raise exc.with_side(side, str(endpoint)) from exc
        # No read timeout: exports and loads of large images legitimately stay silent for long.
        self._client = httpx.Client(
            transport=transport, base_url=base, timeout=httpx.Timeout(30.0, read=None, write=None)
        )
        self.api_version = MIN_API_VERSION
        self.info: EngineInfo | None = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # --- plumbing -------------------------------------------------------------------------

    def _at(self, err: E) -> E:
        """Name this side and endpoint in an error."""
        err.side, err.endpoint = self.side, str(self.endpoint)
        return err

    def _error(self, exc: httpx.HTTPError) -> D2DError:
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return self._at(ConnectError(_connect_cause(exc, self.endpoint)))
        if tls := _tls_cause(str(exc)):
            return self._at(ConnectError(tls))
        return self._at(EngineError(f"connection to the engine failed: {exc}"))

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise self._error(exc) from exc

    def _url(self, path: str) -> str:
        return f"/v{self.api_version}{path}"

    def _check(self, resp: httpx.Response, what: str) -> None:
        if resp.status_code < 400:
            return
        resp.read()
        try:
            message = resp.json().get("message") or resp.text
        except ValueError:
            message = resp.text.strip() or resp.reason_phrase
        cls = ImageNotFound if resp.status_code == 404 else EngineError
        raise self._at(cls(f"{what}: {message}", status=resp.status_code))

    def _get_json(self, path: str, what: str, **params: Any) -> Any:
        resp = self._request("GET", self._url(path), params=params or None)
        self._check(resp, what)
        return resp.json()

    # --- calls ----------------------------------------------------------------------------

    def connect(self) -> EngineInfo:
        """Ping, negotiate the API version like the docker CLI, and find out what kind of engine this is."""
        resp = self._request("GET", "/_ping")
        if resp.status_code >= 500 or ("Api-Version" not in resp.headers and resp.status_code != 200):
            raise self._at(EngineError(f"does not answer like a Docker engine (HTTP {resp.status_code})"))
        self.api_version = negotiate_version(resp.headers.get("Api-Version"), os.environ.get("DOCKER_API_VERSION"))
        version = self._get_json("/version", "version")
        components = [c.get("Name", "") for c in version.get("Components") or []]
        if any("Podman" in name for name in components):
            kind = EngineKind.PODMAN
        else:
            info = self._get_json("/info", "info")
            status = dict(tuple(x) for x in info.get("DriverStatus") or [] if len(x) == 2)
            kind = (
                EngineKind.CONTAINERD
                if status.get("driver-type") == "io.containerd.snapshotter.v1"
                else EngineKind.GRAPHDRIVER
            )
        self.info = EngineInfo(
            kind=kind,
            version=version.get("Version", "?"),
            api_version=self.api_version,
            os=version.get("Os", "linux"),
            arch=version.get("Arch", "amd64"),
        )
        return self.info

    def inspect(self, ref: str) -> ImageInfo:
        data = self._get_json(f"/images/{quote(ref, safe='/:@')}/json", f"image {ref}")
        return image_info(data)

    def find(self, ref: str) -> ImageInfo | None:
        try:
            return self.inspect(ref)
        except ImageNotFound:
            return None

    def history_sizes(self, ref: str) -> list[int]:
        """Sizes of the history entries, oldest first (0 for steps without a layer)."""
        data = self._get_json(f"/images/{quote(ref, safe='/:@')}/history", f"history of {ref}")
        # An image whose config has no history: the containerd store answers null (issue 11).
        return [_size(h.get("Size")) if isinstance(h, dict) else 0 for h in reversed(data or [])]

    def list_image_ids(self) -> list[str]:
        # all=1: graphdriver engines keep intermediate images whose layers count as held too.
        return [img["Id"] for img in self._get_json("/images/json", "image list", all="1")]

    def all_images(self) -> list[ImageInfo]:
        images = []
        for image_id in self.list_image_ids():
            found = self.find(image_id)  # an image removed meanwhile is simply not there
            if found:
                images.append(found)
        return images

    @contextmanager
    def save(self, names: Iterable[str]) -> Iterator[Iterator[bytes]]:
        """Stream `docker save` of the given images as raw tar bytes."""
        params: list[tuple[str, str | int | float | bool | None]] = [("names", n) for n in names]
        try:
            with self._client.stream("GET", self._url("/images/get"), params=params) as resp:
                self._check(resp, "export")
                yield self._iter_save(resp)
        except httpx.HTTPError as exc:
            raise self._error(exc) from exc

    def _iter_save(self, resp: httpx.Response) -> Iterator[bytes]:
        try:
            yield from resp.iter_raw(CHUNK)
        except httpx.HTTPError as exc:
            raise self._at(EngineError(f"the export stopped mid-stream: {exc}")) from exc

    def load(self, body: Iterable[bytes | memoryview], content_type: str = "application/x-tar") -> list[str]:
        """POST /images/load; read the whole message stream, since the engine reports failures
        inside an HTTP 200 answer. Returns the engine's messages."""
        try:
            with self._client.stream(
                "POST",
                self._url("/images/load"),
                params={"quiet": "1"},
                content=body,  # type: ignore[arg-type]  # httpx writes any buffer to the socket
                headers={"Content-Type": content_type},
            ) as resp:
                self._check(resp, "load")
                text = resp.read().decode(errors="replace")
        except httpx.HTTPError as exc:
            raise self._at(EngineError(f"the load failed: {exc}")) from exc
        messages = []
        for msg in _json_stream(text):
            if msg.get("errorDetail") or msg.get("error"):
                detail = (msg.get("errorDetail") or {}).get("message") or msg.get("error")
                raise self._at(EngineError(f"load failed: {detail}"))
            if msg.get("stream"):
                messages.append(str(msg["stream"]).strip())
        return messages

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        resp = self._request(
            "POST", self._url(f"/images/{quote(image_id, safe=':')}/tag"), params={"repo": repository, "tag": tag}
        )
        self._check(resp, f"tag {repository}:{tag}")


def _size(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else 0


def _json_stream(text: str) -> Iterator[dict[str, Any]]:
    decoder = json.JSONDecoder()
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return
        if isinstance(obj, dict):
            yield obj


def image_info(data: dict[str, Any]) -> ImageInfo:
    diff_ids = tuple((data.get("RootFS") or {}).get("Layers") or ())
    # Engines render the same config differently: graphdriver Docker fills in the build's
    # parent as Config.Image, others leave it empty; empty fields come and go.
    empty: tuple[Any, ...] = (None, "", False, [], {})
    config = {k: v for k, v in (data.get("Config") or {}).items() if k != "Image" and v not in empty}
    ident = {
        "Config": config,
        "Architecture": data.get("Architecture"),
        "Os": data.get("Os"),
        "Created": data.get("Created"),
        "Layers": diff_ids,
    }
    return ImageInfo(
        id=data["Id"] if data["Id"].startswith("sha256:") else "sha256:" + data["Id"],
        diff_ids=diff_ids,
        repo_tags=tuple(data.get("RepoTags") or ()),
        created=data.get("Created") or "",
        fingerprint=hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest(),
        size=int(data.get("Size") or 0),
    )
