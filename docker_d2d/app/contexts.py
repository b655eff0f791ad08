"""Docker contexts and the DOCKER_* environment: which engine `docker` would talk to.

Mirrors docker/cli: cli/command/cli.go resolveContextName and the context store layout
(<configdir>/contexts/meta/<sha256 of name>/meta.json, TLS files under contexts/tls/...).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from ..endpoint import DEFAULT_UNIX_SOCKET, Endpoint, TLSConfig, parse_endpoint, parse_ssh_host
from ..errors import EndpointError
from .options import GlobalOptions


def config_dir(opts: GlobalOptions, env: Mapping[str, str]) -> Path:
    if opts.config:
        return Path(opts.config).expanduser()
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"]).expanduser()
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".docker"


@dataclass(frozen=True)
class ContextStore:
    root: Path  # the config dir

    def _meta_dir(self, name: str) -> Path:
        return self.root / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()

    def names(self) -> list[str]:
        meta = self.root / "contexts" / "meta"
        names = []
        for path in sorted(meta.glob("*/meta.json")) if meta.is_dir() else []:
            try:
                names.append(json.loads(path.read_text())["Name"])
            except (OSError, ValueError, KeyError):
                continue
        return names

    def exists(self, name: str) -> bool:
        return (self._meta_dir(name) / "meta.json").is_file()

    def endpoint(self, name: str) -> Endpoint:
        path = self._meta_dir(name) / "meta.json"
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            raise EndpointError(f'context "{name}": context not found') from None
        except (OSError, ValueError) as exc:
            raise EndpointError(f'context "{name}": cannot read {path}: {exc}') from exc
        docker = (meta.get("Endpoints") or {}).get("docker") or {}
        host = docker.get("Host")
        if not host:
            raise EndpointError(f'context "{name}": it has no docker endpoint')
        tls_dir = self.root / "contexts" / "tls" / hashlib.sha256(name.encode()).hexdigest() / "docker"
        tls = None
        if tls_dir.is_dir() or docker.get("SkipTLSVerify"):
            files = {f: str(tls_dir / f"{f}.pem") for f in ("ca", "cert", "key") if (tls_dir / f"{f}.pem").is_file()}
            tls = TLSConfig(
                verify=not docker.get("SkipTLSVerify", False),
                ca=files.get("ca"),
                cert=files.get("cert"),
                key=files.get("key"),
            )
        endpoint = parse_endpoint(host, tls=tls if host.startswith("tcp://") else None)
        return Endpoint(
            endpoint.scheme,
            f"{name} ({host})",
            endpoint.path,
            endpoint.host,
            endpoint.port,
            endpoint.user,
            endpoint.tls,
        )


def current_context(opts: GlobalOptions, env: Mapping[str, str]) -> str:
    """--context > -H (default) > DOCKER_HOST (default) > DOCKER_CONTEXT > currentContext > default."""
    if opts.context:
        return opts.context
    if opts.hosts or env.get("DOCKER_HOST"):
        return "default"
    if env.get("DOCKER_CONTEXT"):
        return env["DOCKER_CONTEXT"]
    try:
        config = json.loads((config_dir(opts, env) / "config.json").read_text())
        return str(config.get("currentContext") or "default")
    except (OSError, ValueError):
        return "default"


def tls_from_flags(opts: GlobalOptions, env: Mapping[str, str], cfg: Path) -> TLSConfig | None:
    """TLS for the default context: flags, then DOCKER_TLS_VERIFY / DOCKER_TLS / DOCKER_CERT_PATH."""
    verify = opts.tlsverify or bool(env.get("DOCKER_TLS_VERIFY"))
    if not (verify or opts.tls or env.get("DOCKER_TLS") or opts.tls_flags_set):
        return None
    cert_path = Path(env.get("DOCKER_CERT_PATH") or cfg)

    def pick(flag: str | None, name: str) -> str | None:
        if flag:
            return flag
        path = cert_path / name
        return str(path) if path.is_file() else None

    # Like the docker CLI, --tlscacert alone implies verification.
    verify = verify or bool(opts.tlscacert)
    return TLSConfig(
        verify=verify,
        ca=pick(opts.tlscacert, "ca.pem"),
        cert=pick(opts.tlscert, "cert.pem"),
        key=pick(opts.tlskey, "key.pem"),
    )


def default_endpoint(opts: GlobalOptions, env: Mapping[str, str]) -> Endpoint:
    tls = tls_from_flags(opts, env, config_dir(opts, env))
    host = opts.hosts[0] if opts.hosts else env.get("DOCKER_HOST", "")
    if not host:
        host = "tcp://localhost:2376" if tls else f"unix://{DEFAULT_UNIX_SOCKET}"
    return parse_endpoint(host, tls=tls)


def local_engine(opts: GlobalOptions, env: Mapping[str, str]) -> Endpoint:
    """The engine `docker` itself would use with these flags and this environment."""
    name = current_context(opts, env)
    if name == "default":
        return default_endpoint(opts, env)
    return ContextStore(config_dir(opts, env)).endpoint(name)


def resolve(text: str | None, opts: GlobalOptions, env: Mapping[str, str]) -> Endpoint:
    """What the user typed for a side -> an endpoint. An address (with ://) is an address; a word
    is a context when one of that name exists (or `default`); anything else is not understood yet."""
    if not text:
        return local_engine(opts, env)
    if "://" in text:
        return parse_endpoint(text, tls=tls_from_flags(opts, env, config_dir(opts, env)))
    if text == "default":
        return default_endpoint(opts, env)
    store = ContextStore(config_dir(opts, env))
    if store.exists(text):
        return store.endpoint(text)
    # Not a context: a host as ssh knows it. A context of the same name wins; ssh://name forces ssh.
    # Should ssh not know it either, the message lists the contexts the user may have meant.
    return replace(parse_ssh_host(text), contexts=("default", *sorted(store.names())))
