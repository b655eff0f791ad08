"""How a failed call to an engine is worded: a transport's error -> ours, naming the side and the cause."""

from __future__ import annotations

import httpx

from ..endpoint import Endpoint, Scheme, hostport
from ..errors import ConnectError, D2DError, EngineError, StalledError
from .watch import Timeouts, Worded, WriteStalled, stall_cause


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


def transport_error(exc: httpx.HTTPError, endpoint: Endpoint, timeouts: Timeouts, what: str, call: bool) -> D2DError:
    """Map a transport failure to our error (the caller names the side). `what` names what this side
    was asked for: an API call's name (`call`), or the stream ("the export", "the load")."""
    if isinstance(exc.__cause__, Worded) and isinstance(exc.__cause__.error, D2DError):
        return exc.__cause__.error  # worded by the ssh layer
    if stall := stall_cause(exc):
        if isinstance(stall, WriteStalled):
            doing = f"sending {what}"
        else:
            doing = f"waiting for the answer to {what}" if call else f"waiting for {what}"
        return StalledError(f"stalled {doing}: {stall} (--stall-timeout changes the limit)")
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return ConnectError(_connect_cause(exc, endpoint, timeouts))
    if tls := _tls_cause(str(exc)):
        return ConnectError(tls)
    if isinstance(exc, httpx.TimeoutException):
        return ConnectError(
            f"the engine accepted the connection but did not answer {what or 'us'} within "
            f"{timeouts.connect:g} s (is it hung? --connect-timeout changes the wait)"
        )
    return EngineError(f"connection to the engine failed: {exc}")
