"""The Engine API client: the calls docker-d2d makes to a Docker-compatible engine.

Works the same against Docker (graphdriver or containerd image store) and Podman's
compatible API; `EngineInfo.kind` says which one answered.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from .endpoint import Endpoint, Scheme, hostport
from .errors import ConnectError, D2DError, EngineError, ImageNotFound, StalledError, printable
from .inspect_cache import InspectCache
from .model import EngineInfo, EngineKind, ImageInfo, Platform
from .transport import Timeouts, make_transport
from .transport.watch import Silence, Worded, WriteStalled, stall_cause, within

# The newest API version we were tested against; older engines get their own
# version, as the docker CLI negotiates it.
MAX_API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
CHUNK = 1 << 20
# Concurrent inspects over one connection (each an ssh channel over ssh; OpenSSH allows 10 sessions).
INSPECT_CONCURRENCY = 8
# The containerd store and Podman say nothing between taking a load's last byte and their answer,
# for as long as they register its layers: measured here for 800 MiB of incompressible layers, 1.0 s
# (Docker 28.5 containerd store) to 14.9 s (Podman 4.3 and 5.4), about 19 ms a MiB at worst
# (tests/bench/bench_load_gaps.py). Their load connection may be that silent for the stall timeout
# plus this much a MiB of body sent: ten times the worst measured, for slower disks and compressed
# bodies. Docker with a graphdriver reports each layer's progress (quiet=0), so no allowance.
SILENT_LOAD_PER_MB = 0.2
E = TypeVar("E", bound=D2DError)


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def negotiate_version(server: str | None, override: str | None = None, server_min: str | None = None) -> str:
    """The docker CLI's rule, min(ours, the engine's), raised to the engine's floor when the engine
    refuses anything older (Docker 29.0 refused clients below 1.44; any engine may be started with
    DOCKER_MIN_API_VERSION): the calls we make mean the same in every version since 1.24."""
    if override:
        return override
    if not server:
        return MIN_API_VERSION
    version = min(server, MAX_API_VERSION, key=_version_tuple)
    if server_min and _version_tuple(server_min) > _version_tuple(version):
        return min(server_min, server, key=_version_tuple)
    return version


def _tls_cause(text: str) -> str | None:
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"TLS: the engine's certificate is not trusted by the CA given ({text})"
    if "CERTIFICATE_REQUIRED" in text or "BAD_CERTIFICATE" in text or "UNKNOWN_CA" in text:
        return f"TLS: the engine refused our client certificate (give --tlscert/--tlskey it trusts) ({text})"
    if "SSL" in text or "WRONG_VERSION_NUMBER" in text:
        return f"TLS handshake failed ({text}); is the engine listening with TLS on that port?"
    return None


def _where(endpoint: Endpoint) -> str:
    if endpoint.scheme is Scheme.SSH:
        return f"{endpoint.path or 'the engine socket'} on {hostport(endpoint.host, endpoint.port or 22)}"
    return endpoint.path or hostport(endpoint.host, endpoint.port)


def _connect_cause(exc: BaseException, endpoint: Endpoint, timeouts: Timeouts) -> str:
    text = str(exc)
    where = _where(endpoint)
    if isinstance(exc, httpx.ConnectTimeout) and endpoint.scheme is not Scheme.SSH:
        return f"no answer from {where} within {timeouts.connect:g} s (--connect-timeout changes the wait)"
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

    def __init__(self, endpoint: Endpoint, side: str, timeouts: Timeouts | None = None) -> None:
        self.endpoint = endpoint
        self.side = side
        self.timeouts = timeouts = timeouts or Timeouts()
        try:
            transport, base = make_transport(endpoint, timeouts, alive=self._alive)
            ping_transport, _ = make_transport(endpoint, timeouts)
        except D2DError as exc:
            raise exc.with_side(side, str(endpoint)) from exc
        # No read or write timeout here: exports and loads of large images legitimately stay
        # silent for long, so the streams' watchdog decides (transport/watch.py).
        self._client = httpx.Client(
            transport=transport,
            base_url=base,
            timeout=httpx.Timeout(timeouts.connect, read=None, write=None, pool=None),
        )
        # The watchdog's pings go on connections of their own, each wait bounded.
        self._pings = httpx.Client(transport=ping_transport, base_url=base, timeout=timeouts.probe)
        self.api_version = MIN_API_VERSION
        self.server_api: str | None = None  # the engine's own newest version, for calls newer than ours
        self.info: EngineInfo | None = None
        self._cache: InspectCache | None = None
        self.stale: list[str] = []  # ids whose cached inspect the engine contradicted in this run

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._cache is not None:
            self._cache.save()
        self._client.close()
        self._pings.close()

    def answers(self, seconds: float) -> bool:
        """Whether the engine answers a ping within `seconds` (on a connection of its own)."""
        return self._alive(seconds)

    def _alive(self, seconds: float) -> bool:
        """Whether the engine answers a ping within `seconds`, on another connection."""
        try:
            self._pings.get("/_ping", timeout=seconds)
        except httpx.HTTPError:
            return False
        return True

    # --- plumbing -------------------------------------------------------------------------

    def _at(self, err: E) -> E:
        """Name this side and endpoint in an error."""
        err.side, err.endpoint = self.side, str(self.endpoint)
        return err

    def _error(self, exc: httpx.HTTPError, what: str = "", call: bool = True) -> D2DError:
        """Map a transport failure to our error. `what` names what this side was asked for: an API
        call's name (`call`), or the stream ("the export", "the load")."""
        if isinstance(exc.__cause__, Worded) and isinstance(exc.__cause__.error, D2DError):
            return exc.__cause__.error.with_side(self.side, str(self.endpoint))  # worded by the ssh layer
        if stall := stall_cause(exc):
            if isinstance(stall, WriteStalled):
                doing = f"sending {what}"
            else:
                doing = f"waiting for the answer to {what}" if call else f"waiting for {what}"
            return self._at(StalledError(f"stalled {doing}: {stall} (--stall-timeout changes the limit)"))
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return self._at(ConnectError(_connect_cause(exc, self.endpoint, self.timeouts)))
        if tls := _tls_cause(str(exc)):
            return self._at(ConnectError(tls))
        if isinstance(exc, httpx.TimeoutException):
            return self._at(
                ConnectError(
                    f"the engine accepted the connection but did not answer {what or 'us'} within "
                    f"{self.timeouts.connect:g} s (is it hung? --connect-timeout changes the wait)"
                )
            )
        return self._at(EngineError(f"connection to the engine failed: {exc}"))

    def _request(self, method: str, url: str, what: str = "", **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise self._error(exc, what or url) from exc

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

    def _get_json(self, path: str, what: str, timeout: float | None = None, **params: Any) -> Any:
        extra: dict[str, Any] = {"timeout": timeout} if timeout else {}
        resp = self._request("GET", self._url(path), what, params=params or None, **extra)
        self._check(resp, what)
        return resp.json()

    # --- calls ----------------------------------------------------------------------------

    def connect(self) -> EngineInfo:
        """Ping, negotiate the API version like the docker CLI, and find out what kind of engine this is."""
        # Each first call waits at most the connect timeout, with no watchdog patience: an engine
        # that accepts connections and never answers (wedged, stopped) is no reason to wait.
        first = self.timeouts.connect
        ping = self._request("GET", "/_ping", "the ping", timeout=first)
        if ping.status_code >= 500 or ("Api-Version" not in ping.headers and ping.status_code != 200):
            raise self._at(EngineError(f"does not answer like a Docker engine (HTTP {ping.status_code})"))
        # Unversioned: answered at the engine's own version, whatever its floor (MinAPIVersion).
        resp = self._request("GET", "/version", "the version", timeout=first)
        self._check(resp, "version")
        version = resp.json()
        self.server_api = ping.headers.get("Api-Version") or version.get("ApiVersion")
        self.api_version = negotiate_version(
            self.server_api,
            os.environ.get("DOCKER_API_VERSION"),
            version.get("MinAPIVersion"),
        )
        components = [c.get("Name", "") for c in version.get("Components") or []]
        if any("Podman" in name for name in components):
            kind = EngineKind.PODMAN
        else:
            info = self._get_json("/info", "info", timeout=first)
            status = dict(tuple(x) for x in info.get("DriverStatus") or [] if len(x) == 2)
            kind = (
                EngineKind.CONTAINERD
                if status.get("driver-type") == "io.containerd.snapshotter.v1"
                else EngineKind.GRAPHDRIVER
            )
        self.info = EngineInfo(
            kind=kind,
            version=printable(str(version.get("Version", "?"))),  # shown on the terminal
            api_version=self.api_version,
            os=version.get("Os", "linux"),
            arch=version.get("Arch", "amd64"),
        )
        return self.info

    def inspect(self, ref: str) -> ImageInfo:
        """Always asks the engine; every answer also goes into the inspect cache."""
        info = image_info(self._get_json(f"/images/{quote(ref, safe='/:@')}/json", f"image {ref}"))
        if self.info is not None:
            self._inspect_cache().put(info)
        return info

    def _inspect_cache(self) -> InspectCache:
        assert self.info is not None
        if self._cache is None:
            self._cache = InspectCache.for_engine(str(self.endpoint), self.info.kind, os.environ)
        return self._cache

    def inspect_platform(self, ref: str, platform: Platform | None) -> ImageInfo:
        """Inspect as API 1.49 answers (the store's descriptor; one platform of an index)."""
        params = {"platform": json.dumps(platform.as_json())} if platform else None
        resp = self._request("GET", f"/v1.49/images/{quote(ref, safe='/:@')}/json", params=params)
        self._check(resp, f"image {ref}" + (f" for {platform}" if platform else ""))
        return image_info(resp.json())

    def find(self, ref: str) -> ImageInfo | None:
        try:
            return self.inspect(ref)
        except ImageNotFound:
            return None

    def remove_untagged(self, image_id: str) -> bool:
        """Remove an image that carries no tag (what an interrupted load left); False if it is
        not there or someone tagged it meanwhile."""
        found = self.find(image_id)
        if found is None or found.repo_tags:
            return False
        resp = self._request("DELETE", self._url(f"/images/{quote(image_id, safe=':')}"))
        self._check(resp, f"remove {image_id}")
        return True

    def history_sizes(self, ref: str, platform: Platform | None = None) -> list[int]:
        """Sizes of the history entries, oldest first (0 for steps without a layer)."""
        if platform is None:
            try:
                data = self._get_json(f"/images/{quote(ref, safe='/:@')}/history", f"history of {ref}")
            except EngineError as exc:
                if exc.status < 500:
                    raise
                # The sizes are only estimates. Podman 4.3 and 5.4 answer 500 (a nil pointer) for
                # history entries without `created`, which the image spec allows.
                return []
        else:
            resp = self._request(
                "GET",
                f"/v1.48/images/{quote(ref, safe='/:@')}/history",
                params={"platform": json.dumps(platform.as_json())},
            )
            self._check(resp, f"history of {ref}")
            data = resp.json()
        # An image whose config has no history: the containerd store answers null (issue 11).
        return [_size(h.get("Size")) if isinstance(h, dict) else 0 for h in reversed(data or [])]

    def list_images(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """id -> (tags, repo digests) of every image. all=1: graphdriver engines keep intermediate
        images whose layers count as held too."""
        listed = self._get_json("/images/json", "image list", all="1")
        return {
            _full_id(img["Id"]): (tuple(img.get("RepoTags") or ()), tuple(img.get("RepoDigests") or ()))
            for img in listed
        }

    def list_image_ids(self) -> list[str]:
        return list(self.list_images())

    def labelled(self, label: str, value: str) -> list[str]:
        """Ids of the images whose config carries this label with this value."""
        filters = json.dumps({"label": [f"{label}={value}"]})
        listed = self._get_json("/images/json", "image list", all="1", filters=filters)
        return [_full_id(img["Id"]) for img in listed]

    def all_images(self) -> list[ImageInfo]:
        """Every image the engine lists. Inspect answers are cached by id (content addresses) and
        the rest are asked for concurrently: planning costs about one round trip whatever the
        number of images. Cached entries the engine now contradicts are dropped (`self.stale`)."""
        assert self.info is not None
        listed = self.list_images()
        cache = self._inspect_cache()
        self.recheck(self._unavailable(listed))
        missing = [i for i in listed if cache.get(i) is None]
        if missing:
            with ThreadPoolExecutor(max_workers=INSPECT_CONCURRENCY) as pool:
                list(pool.map(self.find, missing))  # an image removed meanwhile is simply not there
        cache.keep_only(listed)
        cache.save()
        images = []
        for image_id, (tags, digests) in listed.items():
            held = cache.get(image_id)
            if held:
                images.append(replace(held, repo_tags=tags, repo_digests=digests))
        return images

    def _unavailable(self, listed: Iterable[str]) -> list[str]:
        """Listed images of a containerd store none of whose platforms has all its content (blobs
        removed behind our back: Docker 28 lists such an image, and inspect then answers no
        layers). Asked only when one of them is cached: the cache may say it holds layers."""
        cache = self._cache
        if self.info is None or self.info.kind is not EngineKind.CONTAINERD or not self.speaks("1.47"):
            return []
        if cache is None or not any(cache.get(i) for i in listed):
            return []
        resp = self._request("GET", "/v1.47/images/json", params={"all": "1", "manifests": "1"})
        self._check(resp, "image list")
        gone = []
        for img in resp.json():
            manifests = [m for m in img.get("Manifests") or [] if m.get("Kind") == "image"]
            if manifests and not any(m.get("Available") for m in manifests):
                gone.append(_full_id(img["Id"]))
        return gone

    def recheck(self, image_ids: Iterable[str]) -> list[str]:
        """Inspect afresh the cached images among `image_ids`; drop the entries the engine now
        contradicts (another answer, no layers, or no such image). Returns their ids, which are
        also added to `stale`."""
        cache = self._inspect_cache()
        wrong = []
        for image_id in image_ids:
            cached = cache.get(image_id)
            if cached is None:
                continue
            # Each answer within the connect timeout: an engine going away is no reason to wait.
            path = f"/images/{quote(image_id, safe=':')}/json"
            try:
                fresh: ImageInfo | None = image_info(self._get_json(path, f"image {image_id}", self.timeouts.connect))
            except ImageNotFound:
                fresh = None
            if fresh is None or fresh.diff_ids != cached.diff_ids or fresh.fingerprint != cached.fingerprint:
                cache.drop(image_id)
                if fresh is not None:
                    cache.put(fresh)  # an answer with layers is the entry now
                wrong.append(image_id)
        cache.save()
        self.stale.extend(wrong)
        return wrong

    def speaks(self, version: str) -> bool:
        """Whether the engine has API `version` (for single calls that need more than we negotiate)."""
        return bool(self.server_api) and _version_tuple(str(self.server_api)) >= _version_tuple(version)

    def image_complete(self, image_id: str) -> bool:
        """Whether the containerd store holds every blob of an image. Docker 26 hides an image with
        missing content from its list; Docker 28 lists it, marked unavailable (API 1.47 summaries)."""
        if self.speaks("1.47"):
            resp = self._request("GET", "/v1.47/images/json", params={"all": "1", "manifests": "1"})
            self._check(resp, "image list")
            for img in resp.json():
                if img.get("Id") == image_id:
                    manifests = [m for m in img.get("Manifests") or [] if m.get("Kind") == "image"]
                    return all(m.get("Available") for m in manifests)
            return False
        return image_id in self.list_image_ids()

    def remove(self, image_id: str) -> None:
        """Remove an image docker-d2d loaded (an incomplete load or a probe); a missing one is fine."""
        resp = self._request("DELETE", self._url(f"/images/{quote(image_id, safe=':')}"), params={"force": "1"})
        if resp.status_code != 404:
            self._check(resp, f"remove {image_id}")

    @contextmanager
    def save(self, names: Iterable[str], platform: Platform | None = None) -> Iterator[Iterator[bytes]]:
        """Stream `docker save` of the given images as raw tar bytes; `platform` (API 1.48) asks
        for one platform of a multi-platform image."""
        params: list[tuple[str, str | int | float | bool | None]] = [("names", n) for n in names]
        url = self._url("/images/get")
        if platform is not None:
            params.append(("platform", json.dumps(platform.as_json())))
            url = "/v1.48/images/get"
        try:
            with self._client.stream("GET", url, params=params) as resp:
                self._check(resp, "export")
                yield self._iter_save(resp)
        except httpx.HTTPError as exc:
            raise self._error(exc, "the export", call=False) from exc

    def _iter_save(self, resp: httpx.Response) -> Iterator[bytes]:
        try:
            yield from resp.iter_raw(CHUNK)
        except httpx.HTTPError as exc:
            if stall_cause(exc):
                raise self._error(exc, "the export's next bytes", call=False) from exc
            raise self._at(EngineError(f"the export stopped mid-stream: {exc}")) from exc

    def load(self, body: Iterable[bytes | memoryview], content_type: str = "application/x-tar") -> list[str]:
        """POST /images/load; read the whole message stream, since the engine reports failures
        inside an HTTP 200 answer. Returns the engine's messages.

        The load's connection may go silent for the stall timeout only (plus, at engines that
        answer nothing until they are done, an allowance for the bytes sent), whether or not the
        engine answers pings: a live engine is no proof that this connection still moves."""
        speaks = self.info is not None and self.info.kind is EngineKind.GRAPHDRIVER
        silence = Silence(self.timeouts.stall, 0.0 if speaks else SILENT_LOAD_PER_MB)

        def counted() -> Iterator[bytes | memoryview]:
            for chunk in body:
                yield chunk
                silence.sent += len(chunk)

        try:
            with (
                within(silence),
                self._client.stream(
                    "POST",
                    self._url("/images/load"),
                    # Docker with a graphdriver then reports each layer as it registers it (moby
                    # image/tarexport/load.go): the answer keeps moving until the load is done.
                    params={"quiet": "0" if speaks else "1"},
                    content=counted(),  # type: ignore[arg-type]  # httpx writes any buffer to the socket
                    headers={"Content-Type": content_type},
                ) as resp,
            ):
                self._check(resp, "load")
                text = resp.read().decode(errors="replace")
        except httpx.HTTPError as exc:
            if stall_cause(exc):
                raise self._error(exc, "the load") from exc  # sending it, or waiting for its answer
            raise self._at(EngineError(f"the load failed: {exc}")) from exc
        messages = []
        for msg in _json_stream(text):
            if msg.get("errorDetail") or msg.get("error"):
                detail = (msg.get("errorDetail") or {}).get("message") or msg.get("error")
                raise self._at(EngineError(f"load failed: {detail}"))
            if msg.get("stream"):
                messages.append(str(msg["stream"]).strip())
        return messages

    def pull(self, image: str, tag: str, auth: str | None = None) -> list[dict[str, Any]]:
        """POST /images/create: the engine pulls from a registry. Like a load, failures may come inside
        an HTTP 200 answer. Returns the engine's progress messages."""
        headers = {"X-Registry-Auth": auth} if auth else {}
        try:
            with self._client.stream(
                "POST", self._url("/images/create"), params={"fromImage": image, "tag": tag}, headers=headers
            ) as resp:
                self._check(resp, f"pull {image}:{tag}")
                text = resp.read().decode(errors="replace")
        except httpx.HTTPError as exc:
            raise self._at(EngineError(f"the pull of {image}:{tag} failed: {exc}")) from exc
        messages = list(_json_stream(text))
        for msg in messages:
            if msg.get("errorDetail") or msg.get("error"):
                detail = (msg.get("errorDetail") or {}).get("message") or msg.get("error")
                raise self._at(EngineError(f"pull of {image}:{tag} failed: {detail}"))
        return messages

    def untag(self, ref: str) -> None:
        """Remove a name; the image stays while another name holds it."""
        resp = self._request("DELETE", self._url(f"/images/{quote(ref, safe='/:@')}"), params={"noprune": "1"})
        self._check(resp, f"remove the name {ref}")

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        resp = self._request(
            "POST",
            self._url(f"/images/{quote(image_id, safe=':')}/tag"),
            f"tag {repository}:{tag}",
            params={"repo": repository, "tag": tag},
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


def _full_id(image_id: str) -> str:
    return image_id if image_id.startswith("sha256:") else "sha256:" + image_id


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
        id=_full_id(data["Id"]),
        diff_ids=diff_ids,
        repo_tags=tuple(data.get("RepoTags") or ()),
        created=data.get("Created") or "",
        repo_digests=tuple(data.get("RepoDigests") or ()),
        fingerprint=hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest(),
        size=int(data.get("Size") or 0),
        platform=Platform(*(str(data.get(k) or "") for k in ("Os", "Architecture", "Variant"))),
        media_type=str((data.get("Descriptor") or {}).get("mediaType") or ""),
    )
