"""The watchdog on real sockets (a socketpair): a quiet peer is pinged, a dead one is a stall
within the stall timeout, and partial sends lose no byte."""

from __future__ import annotations

import socket
import threading
import time

import httpcore
import pytest

from docker_d2d.engine.watch import Patience, ReadStalled, SocketStream, Timeouts, WriteStalled


def _pair(alive: bool, stall: float = 0.4) -> tuple[SocketStream, socket.socket, list[float]]:
    ours, peer = socket.socketpair()
    pings: list[float] = []

    def ping(seconds: float) -> bool:
        pings.append(seconds)
        return alive

    return SocketStream(ours, Patience(Timeouts(connect=1, stall=stall), ping)), peer, pings


def test_a_read_from_a_dead_peer_stalls_within_the_stall_timeout() -> None:
    stream, peer, pings = _pair(alive=False)
    started = time.monotonic()
    with pytest.raises(ReadStalled):
        stream.read(1024)
    assert time.monotonic() - started < 0.6 and pings == [pytest.approx(0.2)]
    peer.close()


def test_a_slow_peer_that_answers_pings_is_waited_for() -> None:
    stream, peer, pings = _pair(alive=True, stall=0.2)
    threading.Timer(0.7, peer.sendall, (b"late answer",)).start()
    assert stream.read(1024) == b"late answer"
    assert len(pings) >= 3
    peer.close()


def test_a_write_to_a_peer_that_stops_reading_stalls_and_partial_sends_lose_nothing() -> None:
    stream, peer, _ = _pair(alive=False)
    with pytest.raises(WriteStalled):
        stream.write(b"x" * (64 << 20))  # far more than the socket buffers hold
    peer.close()

    stream, peer, _ = _pair(alive=True)
    payload = bytes(range(256)) * 20_000  # 5 MB: many partial sends
    received = bytearray()

    def drain() -> None:
        while len(received) < len(payload):
            time.sleep(0.001)
            received.extend(peer.recv(1 << 16))

    reader = threading.Thread(target=drain)
    reader.start()
    stream.write(payload)
    reader.join()
    assert bytes(received) == payload


def test_an_explicit_timeout_is_a_plain_timeout() -> None:
    stream, peer, pings = _pair(alive=True)
    with pytest.raises(httpcore.ReadTimeout) as info:
        stream.read(1024, timeout=0.1)
    assert not isinstance(info.value, ReadStalled) and pings == []
    peer.close()
