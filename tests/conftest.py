"""Test-session settings."""

import signal

import pytest
import torch

# The tests train tiny networks, for which one thread is fastest: more threads only add
# synchronisation, and on a busy 2-core machine they wait on each other for most of the time.
torch.set_num_threads(1)


@pytest.fixture
def ctrl_c_raises():
    """Ctrl-C (SIGINT) raises KeyboardInterrupt during the test, as in a terminal. A shell that
    starts pytest in the background without job control (``cmd &`` in a script) makes it
    ignore SIGINT, and Python then never installs its handler."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
