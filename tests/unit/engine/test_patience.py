"""The stream watchdog's decisions: a quiet engine that answers pings is waited for, a silent one fails (issue 7, item 3)."""

from __future__ import annotations

import time

import httpcore
import pytest

from docker_d2d.engine.watch import Patience, ReadStalled, Timeouts, WriteStalled, stall_cause


def _never(seconds: float | None) -> bytes:
    time.sleep(seconds or 0)
    raise TimeoutError("timed out")


def test_a_quiet_stream_whose_engine_answers_pings_keeps_waiting() -> None:
    pings: list[float] = []
    answers = iter([True, True, False])

    def alive(seconds: float) -> bool:
        pings.append(seconds)
        return next(answers)

    patience = Patience(Timeouts(connect=1, stall=0.2), alive=alive)
    started = time.monotonic()
    with pytest.raises(ReadStalled, match=r"no byte moved for 0\.2 s"):
        patience.wait(_never, None, write=False)
    assert len(pings) == 3 and pings[0] == pytest.approx(0.1)
    assert 0.3 <= time.monotonic() - started < 2


def test_a_quiet_stream_whose_engine_is_silent_fails_within_the_stall_timeout() -> None:
    def alive(seconds: float) -> bool:
        time.sleep(seconds)
        return False

    patience = Patience(Timeouts(stall=0.4), alive=alive)
    started = time.monotonic()
    with pytest.raises(WriteStalled) as info:
        patience.wait(_never, None, write=True)
    assert time.monotonic() - started < 0.8
    assert stall_cause(RuntimeError("wrapped").with_traceback(None)) is None
    wrapped = RuntimeError("httpx")
    wrapped.__cause__ = info.value
    assert stall_cause(wrapped) is info.value


def test_an_explicit_timeout_is_strict_and_never_pings() -> None:
    patience = Patience(Timeouts(stall=0.2), alive=lambda s: pytest.fail("pinged"))
    with pytest.raises(httpcore.ReadTimeout) as info:
        patience.wait(_never, 0.05, write=False)
    assert not isinstance(info.value, ReadStalled)
    assert patience.wait(lambda s: b"data", None, write=False) == b"data"
