"""The registry client: blobs and manifests of the distribution API, authenticated the way the
registry asks (HTTP basic or a bearer token), with the user's credentials or anonymously.

Plain http is used only where the engines would use it without being told: a loopback registry,
or an address given as http://... (which the destinations must list in `insecure-registries`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

import httpx

from ..errors import ConnectError, EngineError
from .auth import Credentials
from .refs import RegistryRef

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


class Registry:
    """One repository of one registry. Use as a context manager. Without credentials, reads are
    anonymous (a token for them is asked for as the registry says); writes need credentials."""

    def __init__(
        self, ref: RegistryRef, credentials: Credentials | None, timeout: float = 30.0, read: float = 300.0
    ) -> None:
        self.ref = ref
        self.credentials = credentials
        self._client = httpx.Client(base_url=ref.base, timeout=httpx.Timeout(timeout, read=read))
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
        """A token for the challenge: with the credentials, or without (a token server gives
        anonymous ones for public repositories)."""
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        bearer = challenge.lower().startswith("bearer") and "realm" in params
        if self.credentials is None:
            if not bearer:
                why = f"the registry wants credentials and the Docker config has none (docker login {self.ref.host})"
                raise self._fail("access denied", why)
            headers = {}
        else:
            basic = base64.b64encode(f"{self.credentials.username}:{self.credentials.password}".encode()).decode()
            if challenge.lower().startswith("basic"):
                self._token = f"Basic {basic}"
                return
            if not bearer:
                raise self._fail("access denied", f"unsupported authentication {challenge!r}")
            headers = {"Authorization": f"Basic {basic}"}
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        query.setdefault("scope", f"repository:{self.ref.repository}:pull,push")
        resp = httpx.get(params["realm"], params=query, headers=headers, timeout=30)
        if resp.status_code != 200:
            raise self._fail("login failed", f"HTTP {resp.status_code} from {params['realm']}")
        doc = resp.json()
        self._token = f"Bearer {doc.get('token') or doc.get('access_token')}"

    # --- blobs and manifests --------------------------------------------------------------------

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

    def manifest(self, digest: str) -> dict[str, Any]:
        """A manifest or index by its digest, checked against the digest. Raises RegistryError,
        httpx.HTTPError or ValueError when it cannot be had."""
        resp = self._request("GET", f"/v2/{self.ref.repository}/manifests/{digest}", headers={"Accept": ACCEPT})
        resp.raise_for_status()
        if "sha256:" + hashlib.sha256(resp.content).hexdigest() != digest:
            raise ValueError(f"manifest {digest} does not match its digest")
        doc = json.loads(resp.content)
        if not isinstance(doc, dict):
            raise ValueError("not a manifest")
        return doc
