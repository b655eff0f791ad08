"""A distribution registry as a hop: `--via REGISTRY[/REPOSITORY]`.

The images' missing blobs are pushed once to the registry the user names; each destination then
pulls through its own Engine API. Credentials come only from the user's Docker config for that
registry (`auths`, `credHelpers`, `credsStore`, as `docker login` left them); nothing is written.

Plain http is used only where the engines would use it without being told: a loopback registry, or
an address given as http://... (which the destinations must list in `insecure-registries`).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .errors import ConnectError, EngineError, UsageError

DEFAULT_REPOSITORY = "docker-d2d"
_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$")


@dataclass(frozen=True)
class RegistryRef:
    host: str  # host[:port], as engines name it in image references
    repository: str
    insecure: bool  # plain http

    @property
    def base(self) -> str:
        return f"{'http' if self.insecure else 'https'}://{self.host}"

    def image(self, tag: str) -> str:
        return f"{self.host}/{self.repository}:{tag}"

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}"


def parse_registry(text: str) -> RegistryRef:
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    elif scheme not in ("http", "https"):
        raise UsageError(f"--via {text!r}: give REGISTRY[/REPOSITORY], http://... or https://...")
    host, _, repository = rest.strip("/").partition("/")
    if not host or not re.fullmatch(r"[A-Za-z0-9.\-]+(:\d+)?|\[[0-9a-fA-F:]+\](:\d+)?", host):
        raise UsageError(f"--via {text!r}: not a registry address")
    repository = repository or DEFAULT_REPOSITORY
    if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*", repository):
        raise UsageError(f"--via {text!r}: {repository!r} is not a valid repository name")
    insecure = scheme == "http" or (scheme == "" and bool(_LOOPBACK.match(host)))
    return RegistryRef(host, repository, insecure)


# --- credentials from the Docker config --------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def engine_header(self, server: str) -> str:
        """X-Registry-Auth for the destinations' pulls."""
        doc = {"username": self.username, "password": self.password, "serveraddress": server}
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def registry_credentials(host: str, config_dir: Path, env: Mapping[str, str]) -> Credentials | None:
    try:
        config = json.loads((config_dir / "config.json").read_text())
    except (OSError, ValueError):
        return None
    helper = (config.get("credHelpers") or {}).get(host) or config.get("credsStore")
    if helper:
        found = _from_helper(helper, host, env)
        if found:
            return found
    for key, entry in (config.get("auths") or {}).items():
        if _auth_host(key) == host and isinstance(entry, dict):
            if entry.get("auth"):
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                return Credentials(user, password)
            if entry.get("username"):
                return Credentials(entry["username"], entry.get("password", ""))
    return None


def _auth_host(key: str) -> str:
    return key.split("://", 1)[-1].split("/", 1)[0]


def _from_helper(helper: str, host: str, env: Mapping[str, str]) -> Credentials | None:
    try:
        cmd = [f"docker-credential-{helper}", "get"]
        proc = subprocess.run(cmd, input=host, capture_output=True, text=True, env=dict(env), timeout=30)
        doc = json.loads(proc.stdout) if proc.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None
    if not doc or not doc.get("Username"):
        return None
    return Credentials(doc["Username"], doc.get("Secret", ""))


@dataclass(frozen=True)
class Via:
    """The registry hop a run goes through, and the user's credentials for it."""

    ref: RegistryRef
    credentials: Credentials | None

    def engine_auth(self) -> str | None:
        return self.credentials.engine_header(self.ref.host) if self.credentials else None


# --- the registry API ------------------------------------------------------------------------


class Registry:
    """The few calls a push needs: blob exists, blob upload (streamed), manifest put."""

    def __init__(self, ref: RegistryRef, credentials: Credentials | None, timeout: float = 30.0) -> None:
        self.ref = ref
        self.credentials = credentials
        self._client = httpx.Client(base_url=ref.base, timeout=httpx.Timeout(timeout, read=300.0))
        self._token: str | None = None

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def _fail(self, what: str, detail: str) -> EngineError:
        return EngineError(f"{what}: {detail}", side="registry", endpoint=str(self.ref))

    def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        for attempt in range(2):
            if self._token:
                headers["Authorization"] = self._token
            try:
                resp = self._client.request(method, url, headers=headers, **kw)
            except httpx.HTTPError as exc:
                where = str(self.ref)
                raise ConnectError(f"cannot reach the registry: {exc}", side="registry", endpoint=where) from exc
            if resp.status_code != 401 or attempt:
                return resp
            self._authenticate(resp.headers.get("WWW-Authenticate", ""))
        raise AssertionError("unreachable")

    def _authenticate(self, challenge: str) -> None:
        if self.credentials is None:
            why = f"the registry wants credentials and the Docker config has none (docker login {self.ref.host})"
            raise self._fail("access denied", why)
        basic = base64.b64encode(f"{self.credentials.username}:{self.credentials.password}".encode()).decode()
        if challenge.lower().startswith("basic"):
            self._token = f"Basic {basic}"
            return
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if not challenge.lower().startswith("bearer") or "realm" not in params:
            raise self._fail("access denied", f"unsupported authentication {challenge!r}")
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        query.setdefault("scope", f"repository:{self.ref.repository}:pull,push")
        resp = httpx.get(params["realm"], params=query, headers={"Authorization": f"Basic {basic}"}, timeout=30)
        if resp.status_code != 200:
            raise self._fail("login failed", f"HTTP {resp.status_code} from {params['realm']}")
        doc = resp.json()
        self._token = f"Bearer {doc.get('token') or doc.get('access_token')}"

    def has_blob(self, digest: str) -> bool:
        resp = self._request("HEAD", f"/v2/{self.ref.repository}/blobs/{digest}")
        if resp.status_code in (200, 404):
            return resp.status_code == 200
        raise self._fail(f"blob {digest}", f"HTTP {resp.status_code}")

    def upload_blob(self, digest: str, body: Iterable[bytes]) -> None:
        """A monolithic upload: POST for a session, then PUT with the body streamed."""
        start = self._request("POST", f"/v2/{self.ref.repository}/blobs/uploads/")
        if start.status_code != 202:
            raise self._fail("upload", f"HTTP {start.status_code}: {start.text.strip()[:200]}")
        location = start.headers["Location"]
        sep = "&" if "?" in location else "?"
        resp = self._request(
            "PUT",
            f"{location}{sep}digest={digest}",
            content=body,
            headers={"Content-Type": "application/octet-stream"},
        )
        if resp.status_code != 201:
            raise self._fail(f"upload of {digest}", f"HTTP {resp.status_code}: {resp.text.strip()[:200]}")

    def put_manifest(self, tag: str, media_type: str, body: bytes) -> None:
        resp = self._request(
            "PUT", f"/v2/{self.ref.repository}/manifests/{tag}", content=body, headers={"Content-Type": media_type}
        )
        if resp.status_code != 201:
            raise self._fail(f"manifest {tag}", f"HTTP {resp.status_code}: {resp.text.strip()[:300]}")
