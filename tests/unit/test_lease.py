"""The lease: lost once the worker's loop stood still past the session timeout, until
the next assignment."""

from __future__ import annotations

import pytest

from streams.state import Fenced, Lease


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_pause_past_the_session_timeout_loses_the_lease_until_renewed() -> None:
    clock = FakeClock()
    lease = Lease(10.0, clock)
    clock.now += 60.0  # joining the group, recovering: not armed yet
    assert lease.valid()
    lease.renew()  # the first assignment
    for _ in range(5):
        clock.now += 4.0  # looked at often enough
        assert lease.valid()
    clock.now += 12.0  # SIGSTOP, then SIGCONT
    assert not lease.valid()
    clock.now += 1.0
    assert not lease.valid()  # stays lost though the loop runs again
    with pytest.raises(Fenced):
        lease.check()
    lease.renew()  # the next assignment
    assert lease.valid()
    lease.check()
    lease.close()


def test_an_unlimited_lease_is_never_lost() -> None:
    assert Lease.unlimited().valid()
