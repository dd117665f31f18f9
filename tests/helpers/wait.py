"""The one way a test waits: for a condition, with a generous deadline, never for a fixed time."""

import time

import pytest


def wait_for(condition, timeout: float = 120, every: float = 0.2):
    """The first true value `condition()` returns; the test fails if none comes within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(every)
    pytest.fail(f"waited {timeout} s in vain for {getattr(condition, '__name__', 'a condition')}")
