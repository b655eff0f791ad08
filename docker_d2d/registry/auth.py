"""Registry credentials: only what the user's Docker config holds (`auths`, `credHelpers`,
`credsStore`, as `docker login` left them); nothing is written."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .refs import RegistryRef


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def engine_header(self, server: str) -> str:
        """X-Registry-Auth for the destinations' pulls."""
        doc = {"username": self.username, "password": self.password, "serveraddress": server}
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


def registry_credentials(host: str, config_dir: Path | None, env: Mapping[str, str]) -> Credentials | None:
    """What the user's Docker config (`config_dir`: none given, none used) holds for `host`."""
    if config_dir is None:
        return None
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
