"""Speaking HTTP to an engine: the client over a given transport, errors named by side, the API version."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from ..endpoint import Endpoint
from ..errors import D2DError, EngineError, ImageNotFound, printable
from ..model import EngineInfo, EngineKind
from .answers import (
    MIN_API_VERSION,
    negotiate_version,
    version_tuple,
)
from .failures import transport_error
from .inspect_cache import InspectCache
from .watch import Timeouts

if TYPE_CHECKING:
    from .ssh import SSHConnection

E = TypeVar("E", bound=D2DError)
A = TypeVar("A", bound="ApiClient")


class Pinger:
    """Asks an engine for a ping on connections of its own: the watchdog's question when a
    stream goes quiet (watch.py), each wait bounded."""

    def __init__(self, transport: httpx.BaseTransport, base_url: str, timeout: float) -> None:
        self._client = httpx.Client(transport=transport, base_url=base_url, timeout=timeout)

    def alive(self, seconds: float) -> bool:
        """Whether the engine answers a ping within `seconds`."""
        try:
            self._client.get("/_ping", timeout=seconds)
        except httpx.HTTPError:
            return False
        return True

    def close(self) -> None:
        self._client.close()


class ApiClient:
    """An engine's API over `transport`: requests, errors named by `side`, the version spoken.
    Use as a context manager. `pinger`: the watchdog's pings (closed with it); `ssh`: the
    connection it goes through, if any (the agent of a pull runs on it); `environ`: where
    DOCKER_API_VERSION and the inspect cache's directory are read (default: the process's)."""

    def __init__(
        self,
        endpoint: Endpoint,
        side: str,
        transport: httpx.BaseTransport,
        *,
        base_url: str = "http://docker",
        timeouts: Timeouts | None = None,
        pinger: Pinger | None = None,
        ssh: SSHConnection | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.side = side
        self.timeouts = timeouts = timeouts or Timeouts()
        self.ssh = ssh
        self._environ = environ
        # No read or write timeout here: exports and loads of large images legitimately stay
        # silent for long, so the streams' watchdog decides (watch.py).
        self._client = httpx.Client(
            transport=transport,
            base_url=base_url,
            timeout=httpx.Timeout(timeouts.connect, read=None, write=None, pool=None),
        )
        self._pinger = pinger
        self.api_version = MIN_API_VERSION
        self.server_api: str | None = None  # the engine's own newest version, for calls newer than ours
        self.info: EngineInfo | None = None
        self._cache: InspectCache | None = None
        self.stale: list[str] = []  # ids whose cached inspect the engine contradicted in this run

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def __enter__(self: A) -> A:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._cache is not None:
            self._cache.save()
        self._client.close()
        if self._pinger is not None:
            self._pinger.close()

    def answers(self, seconds: float) -> bool:
        """Whether the engine answers a ping within `seconds` (on a connection of its own)."""
        if self._pinger is not None:
            return self._pinger.alive(seconds)
        try:
            self._client.get("/_ping", timeout=seconds)
        except httpx.HTTPError:
            return False
        return True

    # --- plumbing -------------------------------------------------------------------------

    def _at(self, err: E) -> E:
        """Name this side and endpoint in an error."""
        err.side, err.endpoint = self.side, str(self.endpoint)
        return err

    def _error(self, exc: httpx.HTTPError, what: str = "", call: bool = True) -> D2DError:
        """Map a transport failure to our error, naming this side (failures.py)."""
        return transport_error(exc, self.endpoint, self.timeouts, what, call).with_side(self.side, str(self.endpoint))

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
            self.environ.get("DOCKER_API_VERSION"),
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

    def speaks(self, version: str) -> bool:
        """Whether the engine has API `version` (for single calls that need more than we negotiate)."""
        return bool(self.server_api) and version_tuple(str(self.server_api)) >= version_tuple(version)
