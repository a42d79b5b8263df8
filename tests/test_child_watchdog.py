"""A registration's forked child that stops using the CPU (stuck on a lock fork copied) is killed
and run again, and after aspects.registration.CHILD_TRIES stalls the study fails with exit 7
and a one-line error instead of hanging the app (aspects.registration._in_child)."""

from __future__ import annotations

import time

import pytest

from aspects import registration
from aspects.errors import EXIT_PROCESSING, InputError


@pytest.mark.skipif(not registration.FORK_ANTS or registration._cpu_ticks(1) is None,
                    reason="needs fork and Linux /proc")
def test_a_stuck_child_is_killed_and_run_again(tmp_path, monkeypatch):
    monkeypatch.setattr(registration, "STALL_S", 0.5)
    tried = tmp_path / "tried"

    def job() -> int:
        if not tried.exists():  # the first child: stuck, no CPU (as on a lock that is never freed)
            tried.write_text("1")
            time.sleep(120)
        return 0

    t = time.monotonic()
    assert registration._in_child(job) == 0
    assert tried.exists() and time.monotonic() - t < 20
    # a child that works keeps its result, a failing one its exit status
    assert registration._in_child(lambda: 3) == 3


@pytest.mark.skipif(not registration.FORK_ANTS or registration._cpu_ticks(1) is None,
                    reason="needs fork and Linux /proc")
def test_a_child_stuck_every_time_is_an_error_not_a_hang(monkeypatch):
    monkeypatch.setattr(registration, "STALL_S", 0.3)
    t = time.monotonic()
    with pytest.raises(InputError, match="stuck 3 times") as raised:
        registration._in_child(lambda: time.sleep(120) or 0)
    assert raised.value.code == EXIT_PROCESSING
    assert time.monotonic() - t < 20


@pytest.mark.skipif(not registration.FORK_ANTS or registration._cpu_ticks(1) is None,
                    reason="needs fork and Linux /proc")
def test_a_slow_child_that_uses_the_cpu_is_not_killed(monkeypatch):
    monkeypatch.setattr(registration, "STALL_S", 0.3)

    def busy() -> int:
        end = time.monotonic() + 1.5  # five times the stall limit, on the CPU all along
        while time.monotonic() < end:
            sum(range(1000))
        return 0

    assert registration._in_child(busy) == 0
