"""The agent's spool, on real files: what was spooled survives a reopen (and a crash mid-write),
leaves only when told, in order, and a full spool drops the oldest with a counted warning."""

from __future__ import annotations

import logging
import uuid

import pytest

from collector.agent.spool import COMPACT_MIN_BYTES, MIN_MAX_BYTES, Spool


def beat(n: int) -> dict:
    return {
        "event_id": str(uuid.UUID(int=n)),
        "server": "web01",
        "component": "service" if n % 2 else "web",
        "status": "ok",
        "sent_at": f"2026-11-27T10:00:{n % 60:02d}+00:00",
    }


def ids(heartbeats: list[dict]) -> list[str]:
    return [h["event_id"] for h in heartbeats]


@pytest.fixture
def open_spool():
    """Spool.open, closed at the test's end: a test may leave one open, as a crash would."""
    opened: list[Spool] = []

    def open_(path, max_bytes=MIN_MAX_BYTES) -> Spool:
        opened.append(Spool.open(path, max_bytes))
        return opened[-1]

    yield open_
    for spool in opened:
        spool.close()


def test_what_was_spooled_is_there_after_a_reopen_in_order(tmp_path, open_spool):
    path = tmp_path / "spool.jsonl"
    spool = open_spool(path)
    spool.append([beat(1), beat(2)])
    spool.append([beat(3)])
    spool.close()
    again = open_spool(path)
    _, waiting = again.oldest(10)
    assert waiting == [beat(1), beat(2), beat(3)]  # original event_id and sent_at


def test_every_append_is_on_disk_before_it_returns(tmp_path, open_spool):
    """No close: a process killed right after append loses nothing."""
    path = tmp_path / "spool.jsonl"
    open_spool(path).append([beat(1)])
    _, waiting = open_spool(path).oldest(10)
    assert ids(waiting) == ids([beat(1)])


def test_a_torn_last_line_is_ignored_and_cut_off(tmp_path, caplog, open_spool):
    path = tmp_path / "spool.jsonl"
    spool = open_spool(path)
    spool.append([beat(1), beat(2)])
    spool.close()
    with path.open("ab") as file:  # the crash came in the middle of the next write
        file.write(b'{"seq": 3, "heartbeat": {"event_id": "0000')
    caplog.set_level(logging.WARNING, logger="clustermon.agent")
    again = open_spool(path)
    assert ids(again.oldest(10)[1]) == ids([beat(1), beat(2)])
    assert again.torn == 1
    assert "unreadable" in caplog.text
    again.append([beat(4)])  # and what comes next is not glued to the torn bytes
    again.close()
    assert ids(open_spool(path).oldest(10)[1]) == ids([beat(1), beat(2), beat(4)])


def test_delivered_heartbeats_leave_and_stay_gone_after_a_reopen(tmp_path, open_spool):
    path = tmp_path / "spool.jsonl"
    spool = open_spool(path)
    spool.append([beat(n) for n in range(1, 6)])
    last, first_two = spool.oldest(2)
    assert ids(first_two) == ids([beat(1), beat(2)])
    assert spool.remove_through(last, "delivered") == 2
    assert len(spool) == 3
    _, rest = open_spool(path).oldest(10)
    assert ids(rest) == ids([beat(3), beat(4), beat(5)])


def test_a_crash_between_delivery_and_the_done_line_sends_again_not_loses(tmp_path, open_spool):
    """Until the `done` line is on disk the heartbeats stay: at worst sent twice, and their
    event_id makes clustermon count the second as a duplicate."""
    path = tmp_path / "spool.jsonl"
    spool = open_spool(path)
    spool.append([beat(1), beat(2)])
    last, _ = spool.oldest(2)
    spool.remove_through(last, "delivered")
    spool.close()
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b'{"done"') + 5])  # the done line torn
    assert ids(open_spool(path).oldest(10)[1]) == ids([beat(1), beat(2)])


def test_a_full_spool_drops_the_oldest_and_counts_them(tmp_path, caplog, open_spool):
    caplog.set_level(logging.WARNING, logger="clustermon.agent")
    path = tmp_path / "spool.jsonl"
    spool = open_spool(path)
    n = 0
    dropped = 0
    while not dropped:  # fill it up to the first drop
        n += 1
        dropped = spool.append([beat(n)])
    kept_before = len(spool)
    for k in range(1, 11):
        now = spool.append([beat(n + k)])
        assert now >= 1
        dropped += now
    assert spool.dropped == dropped
    assert spool.pending_bytes <= MIN_MAX_BYTES
    assert len(spool) <= kept_before
    _, waiting = spool.oldest(100_000)
    assert waiting[-1] == beat(n + 10)  # the newest are kept
    assert waiting[0]["event_id"] != beat(1)["event_id"]  # the oldest went
    assert "dropped the" in caplog.text
    assert f"({dropped} dropped since the agent started)" in caplog.text
    spool.close()
    again = open_spool(path)  # the drops are durable too
    assert ids(again.oldest(100_000)[1]) == ids(waiting)


def test_the_file_is_compacted_and_stays_bounded(tmp_path, open_spool):
    path = tmp_path / "spool.jsonl"
    spool = open_spool(path, 4 * COMPACT_MIN_BYTES)
    for n in range(1, 6000):
        spool.append([beat(n)])
        last, _ = spool.oldest(1)
        spool.remove_through(last, "delivered")
    assert path.stat().st_size <= 2 * COMPACT_MIN_BYTES
    spool.append([beat(7000)])
    spool.close()
    assert ids(open_spool(path, 4 * COMPACT_MIN_BYTES).oldest(10)[1]) == ids([beat(7000)])
    assert not (tmp_path / "spool.jsonl.tmp").exists()


def test_a_compaction_cut_short_leaves_the_spool_whole(tmp_path, open_spool):
    path = tmp_path / "spool.jsonl"
    spool = open_spool(path)
    spool.append([beat(1), beat(2)])
    spool.close()
    (tmp_path / "spool.jsonl.tmp").write_bytes(b'{"seq": 2, "heart')  # the crash came here
    again = open_spool(path)
    assert ids(again.oldest(10)[1]) == ids([beat(1), beat(2)])
    assert not (tmp_path / "spool.jsonl.tmp").exists()


def test_batches_are_limited_by_count_and_bytes(tmp_path, open_spool):
    spool = open_spool(tmp_path / "spool.jsonl")
    spool.append([beat(n) for n in range(1, 51)])
    assert len(spool.oldest(20)[1]) == 20
    small = spool.oldest(1000, max_bytes=500)
    assert 1 <= len(small[1]) < 5
    assert spool.oldest(1000, max_bytes=1)[1] == [beat(1)]  # never less than one


def test_a_spool_smaller_than_the_minimum_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least"):
        Spool.open(tmp_path / "spool.jsonl", 1000)
