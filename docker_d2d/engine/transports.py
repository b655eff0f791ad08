"""One small factory per endpoint scheme, each giving an httpx transport and a base URL."""

from __future__ import annotations

import ssl

import httpx

from ..endpoint import Endpoint, Scheme, hostport
from ..errors import EndpointError
from .pool import SSHPool
from .watch import Alive, Patience, SocketBackend, Timeouts, with_backend


def make_transport(
    endpoint: Endpoint, timeouts: Timeouts, *, ssh: SSHPool, alive: Alive | None = None
) -> tuple[httpx.BaseTransport, str]:
    """A transport whose every wait is bounded (see watch.py); `alive` pings the engine when a
    stream goes quiet, and without it every wait is bounded by the timeout httpx passes. Over
    ssh its connections are channels of the run's connection to that host (`ssh`)."""
    patience = Patience(timeouts, alive)
    if endpoint.scheme is Scheme.UNIX:
        return with_backend(SocketBackend(patience), uds=endpoint.path), "http://docker"
    if endpoint.scheme is Scheme.TCP:
        where = hostport(endpoint.host, endpoint.port)
        if endpoint.tls is None:
            return with_backend(SocketBackend(patience)), f"http://{where}"
        return with_backend(SocketBackend(patience), ssl_context=_ssl_context(endpoint)), f"https://{where}"
    if endpoint.scheme is Scheme.SSH:
        from .ssh import ssh_transport

        return ssh_transport(ssh.connection(endpoint, timeouts), endpoint.path, patience), "http://docker"
    raise EndpointError(f"{endpoint}: {endpoint.scheme.value} endpoints are not supported")


def _ssl_context(endpoint: Endpoint) -> ssl.SSLContext:
    tls = endpoint.tls
    assert tls is not None
    try:
        ctx = ssl.create_default_context(cafile=tls.ca) if tls.verify else ssl.create_default_context()
        if not tls.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if tls.cert and tls.key:
            ctx.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise EndpointError(f"TLS material unusable: {exc}") from exc
    return ctx
