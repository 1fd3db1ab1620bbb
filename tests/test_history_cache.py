"""The in-context history cache: contiguous runs of rows by sequence, bounded in rows, oldest agents first out.
(Turns that read through it are covered end to end by tests/api/test_messages.py and tests/cluster.)"""

from __future__ import annotations

from recalld.store.history_cache import HistoryCache


def rows(first: int, last: int) -> list[dict]:
    return [{"id": f"m{seq}", "seq": seq} for seq in range(first, last + 1)]


def test_a_window_is_served_from_its_first_sequence_up_to_the_agents_last():
    cache = HistoryCache(max_rows=100)
    cache.store("org", "a", 3, rows(3, 10))
    assert [r["seq"] for r in cache.rows("org", "a", 3, 10)] == list(range(3, 11))
    assert [r["seq"] for r in cache.rows("org", "a", 6, 12)] == list(range(6, 11))  # 11, 12 come from the database
    assert cache.rows("org", "a", 2, 10) == []  # the window starts before what is cached
    assert cache.rows("org", "a", 11, 12) == []  # nothing cached in the window
    assert cache.rows("org", "b", 3, 10) == [] and cache.rows("other-org", "a", 3, 10) == []


def test_rows_with_gaps_are_not_kept():
    cache = HistoryCache(max_rows=100)
    cache.store("org", "a", 1, [*rows(1, 3), *rows(5, 6)])
    assert cache.rows("org", "a", 1, 6) == [] and len(cache) == 0


def test_the_cache_is_bounded_in_rows_and_evicts_the_least_recently_used_agent():
    cache = HistoryCache(max_rows=40)
    for agent in ("a", "b", "c", "d"):
        cache.store("org", agent, 1, rows(1, 10))
    cache.rows("org", "a", 1, 10)  # a is used again: b is now the oldest
    cache.store("org", "e", 1, rows(1, 10))
    assert len(cache) == 40
    assert cache.rows("org", "b", 1, 10) == [] and cache.rows("org", "a", 1, 10) != []
    cache.store("org", "big", 1, rows(1, 11))  # over a quarter of the cache: not kept
    assert cache.rows("org", "big", 1, 11) == [] and len(cache) == 40


def test_storing_again_replaces_and_zero_rows_disables():
    cache = HistoryCache(max_rows=100)
    cache.store("org", "a", 1, rows(1, 5))
    cache.store("org", "a", 4, rows(4, 8))
    assert len(cache) == 5 and cache.rows("org", "a", 1, 8) == []
    disabled = HistoryCache(max_rows=0)
    disabled.store("org", "a", 1, rows(1, 5))
    assert len(disabled) == 0
