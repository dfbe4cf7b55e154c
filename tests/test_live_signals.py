"""avo.live.stop_on_sigint: the first SIGINT asks for a clean stop, a second one
interrupts, and the same signal delivered twice at once (timeout(1) signals the process
and then its process group) is one interruption, not two."""
import os
import signal
import time

import pytest

from avo import live


@pytest.fixture(autouse=True)
def fresh():
    live.reset()
    yield
    live.reset()


def test_one_sigint_asks_for_a_clean_stop():
    with live.stop_on_sigint():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs in this thread between bytecodes
        assert live.stop_reason().startswith("interrupted (Ctrl-C)")


def test_the_same_sigint_twice_at_once_is_one_interruption():
    with live.stop_on_sigint():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)  # timeout(1)'s second copy, to the process group
        time.sleep(0.05)
        assert live.stop_reason().startswith("interrupted (Ctrl-C)")


def test_a_second_sigint_later_interrupts():
    with pytest.raises(KeyboardInterrupt):
        with live.stop_on_sigint():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(live.SAME_SIGNAL_S + 0.1)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
