"""One small factory per endpoint scheme, each giving an httpx transport and a base URL."""

from __future__ import annotations

import ssl

import httpx

from ..endpoint import Endpoint, Scheme
from ..errors import EndpointError


def make_transport(endpoint: Endpoint) -> tuple[httpx.BaseTransport, str]:
    if endpoint.scheme is Scheme.UNIX:
        return httpx.HTTPTransport(uds=endpoint.path), "http://docker"
    if endpoint.scheme is Scheme.TCP:
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        if endpoint.tls is None:
            return httpx.HTTPTransport(), f"http://{host}:{endpoint.port}"
        return httpx.HTTPTransport(verify=_ssl_context(endpoint)), f"https://{host}:{endpoint.port}"
    if endpoint.scheme is Scheme.SSH:
        from .ssh import ssh_transport

        return ssh_transport(endpoint), "http://docker"
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
