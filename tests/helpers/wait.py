"""The one way a test waits: for a condition, with a generous deadline, never for a fixed time."""

import time

import pytest


def wait_for(condition, timeout: float = 120, every: float = 0.05, while_running=None):
    """The first true value `condition()` returns; None as soon as `while_running` (a process) has ended without
    it; the test fails if neither comes within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        if while_running is not None and while_running.poll() is not None:
            return None
        time.sleep(every)
    pytest.fail(f"waited {timeout} s in vain for {getattr(condition, '__name__', 'a condition')}")
