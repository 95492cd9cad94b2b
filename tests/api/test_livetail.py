"""The worker's live tail of the log (api/livetail.py) at the edges of what it remembers."""

import threading

import pytest

from api.livetail import CATCH_UP_READS, LogTail
from api.services import services
from tests.api.conftest import heartbeat

WAIT = 10  # seconds: only ever reached if the follower never delivers


def positions(frames):
    return None if frames is None else [position for position, _ in frames]


@pytest.fixture
def tail_of(app):
    """LogTails on the app's store, whose followers have ended before the app is torn down (a
    follower still reading when the engine goes leaves its connection unclosed)."""
    made = []

    def make(render, keep: int) -> LogTail:
        made.append(LogTail(services(app).store, render, poll_seconds=0.01, keep=keep))
        return made[-1]

    yield make
    for tail in made:
        tail.stop()


def test_the_tail_hands_over_to_the_store_exactly_below_what_it_remembers(tail_of, post):
    tail = tail_of(lambda r: b"", keep=3)

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
def test_a_follower_that_dies_is_replaced_while_streams_wait(tail_of, post):
    broken = {"once": True}

    def render(r):
        if broken.pop("once", False):
            raise SystemExit("the follower ends by surprise")  # not an Exception: not retried
        return b""

    tail = tail_of(render, keep=10)
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


def test_streams_far_behind_take_turns_at_the_store(app, post):
    # Dashboards resuming from the start of a long log read it page by page from the store:
    # no more than CATCH_UP_READS of those reads at once, whatever the number of streams.
    store = services(app).store
    post({"heartbeats": [heartbeat(server=f"s{i % 100}") for i in range(1000)]})
    tail = LogTail(store, lambda r: b"", poll_seconds=0.01, keep=10)
    running, most, lock = 0, 0, threading.Lock()
    read_all = store.read_all

    def counted(*args, **kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return read_all(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    store.read_all = counted
    start = threading.Barrier(8)
    seen = {}

    def dashboard(n):
        after, got = 0, []
        start.wait(timeout=10)
        while after < 1000:
            frames = tail.frames_from_store(after)
            got += positions(frames)
            after = frames[-1][0]
        seen[n] = got

    threads = [threading.Thread(target=dashboard, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert seen == {n: list(range(1, 1001)) for n in range(8)}
    assert most <= CATCH_UP_READS
