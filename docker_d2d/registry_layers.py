"""Best effort: the layer descriptors of an image a containerd store pulled from a registry.

A store that pulled a base holds its layers under the registry's compressed digests, which no
other source of ours can name. Its image's repo digest (`host/repo@sha256:...`) names the
manifest that lists them; fetched anonymously, it gives candidates a probe then confirms. Any
failure (no network, auth required, another platform) only means no candidates.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

import httpx

from .model import Platform

log = logging.getLogger(__name__)

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$")
Descriptor = dict[str, Any]


def split_repo_digest(repo_digest: str) -> tuple[str, str, str] | None:
    """'host:port/team/app@sha256:..' -> (host, 'team/app', digest); Docker Hub for familiar names."""
    name, _, digest = repo_digest.partition("@")
    if not digest.startswith("sha256:"):
        return None
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repo = first, rest
    else:
        host, repo = "registry-1.docker.io", name.removeprefix("docker.io/")
    if host in ("docker.io", "index.docker.io"):
        host = "registry-1.docker.io"
    if host == "registry-1.docker.io" and "/" not in repo:
        repo = f"library/{repo}"
    return host, repo, digest


def layer_descriptors(
    repo_digest: str, diff_ids: Sequence[str], platform: Platform, timeout: float = 3.0
) -> dict[str, Descriptor]:
    """diff id -> the registry manifest's descriptor, for an image whose layers are `diff_ids`."""
    parts = split_repo_digest(repo_digest)
    if parts is None:
        return {}
    host, repo, digest = parts
    scheme = "http" if _LOOPBACK.match(host) else "https"
    try:
        with httpx.Client(base_url=f"{scheme}://{host}", timeout=timeout) as client:
            doc = _manifest(client, repo, digest)
            if isinstance(doc.get("manifests"), list):
                chosen = next((m for m in doc["manifests"] if platform.matches(m.get("platform") or {})), None)
                if chosen is None:
                    return {}
                doc = _manifest(client, repo, str(chosen["digest"]))
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        log.info("no layer digests from %s: %s", repo_digest, exc)
        return {}
    layers = doc.get("layers")
    if not isinstance(layers, list) or len(layers) != len(diff_ids):
        return {}
    return {
        diff: {k: desc[k] for k in ("mediaType", "digest", "size")}
        for diff, desc in zip(diff_ids, layers)
        if isinstance(desc, dict) and {"mediaType", "digest", "size"} <= set(desc)
    }


def _manifest(client: httpx.Client, repo: str, digest: str) -> dict[str, Any]:
    url = f"/v2/{repo}/manifests/{digest}"
    resp = client.get(url, headers={"Accept": ACCEPT})
    if resp.status_code == 401:
        token = _anonymous_token(client, resp.headers.get("WWW-Authenticate", ""))
        resp = client.get(url, headers={"Accept": ACCEPT, "Authorization": f"Bearer {token}"})
    resp.raise_for_status()
    if "sha256:" + hashlib.sha256(resp.content).hexdigest() != digest:
        raise ValueError(f"manifest {digest} does not match its digest")
    doc = json.loads(resp.content)
    if not isinstance(doc, dict):
        raise ValueError("not a manifest")
    return doc


def _anonymous_token(client: httpx.Client, challenge: str) -> str:
    if not challenge.lower().startswith("bearer "):
        raise ValueError("the registry wants credentials")
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = fields.pop("realm")
    resp = client.get(realm, params=fields)
    resp.raise_for_status()
    data = resp.json()
    return str(data.get("token") or data["access_token"])
