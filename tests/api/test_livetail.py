"""The worker's live tail of the log (api/livetail.py) at the edges of what it remembers."""

import pytest

from api.app import services
from api.livetail import LogTail
from tests.api.conftest import heartbeat

WAIT = 10  # seconds: only ever reached if the follower never delivers


def positions(frames):
    return None if frames is None else [position for position, _ in frames]


def test_the_tail_hands_over_to_the_store_exactly_below_what_it_remembers(app, post):
    tail = LogTail(services(app).store, lambda r: b"", poll_seconds=0.01, keep=3)

    def append(count, name):
        post({"heartbeats": [heartbeat(server=f"{name}{i}") for i in range(count)]})

    with tail.subscribed():
        assert tail.frames_after(-1, WAIT) is None  # the follower has read the head: 0
        append(1, "a")
        assert positions(tail.frames_after(0, WAIT)) == [1]
        append(3, "b")  # 1..4 read, one more than it keeps: 1 is dropped
        assert positions(tail.frames_after(1, WAIT)) == [2, 3, 4]
        assert tail.frames_after(0, 0) is None  # 1 is only in the store now
        assert positions(tail.frames_after(3, 0)) == [4]
        assert tail.frames_after(4, 0) == []
        append(5, "c")  # 5..9 read at once: 2..6 are dropped
        assert positions(tail.frames_after(8, WAIT)) == [9]
        assert tail.frames_after(5, 0) is None  # 6 is gone: handing out 7.. would skip it
        assert positions(tail.frames_after(6, 0)) == [7, 8, 9]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_follower_that_dies_is_replaced_while_streams_wait(app, post):
    broken = {"once": True}

    def render(r):
        if broken.pop("once", False):
            raise SystemExit("the follower ends by surprise")  # not an Exception: not retried
        return b""

    tail = LogTail(services(app).store, render, poll_seconds=0.01, keep=10)
    with tail.subscribed():
        assert tail.frames_after(-1, WAIT) is None  # the follower has read the head: 0
        first = tail.follower
        post(heartbeat(server="first"))
        first.join(timeout=WAIT)  # it read event 1, failed to render it and ended
        assert not first.is_alive()
        # The stream's next wait starts a new follower, which starts from the head (1): event 1
        # is for the store to hand out.
        assert tail.frames_after(0, WAIT) is None
        assert tail.follower is not first
        post(heartbeat(server="second"))
        assert positions(tail.frames_after(1, WAIT)) == [2]
