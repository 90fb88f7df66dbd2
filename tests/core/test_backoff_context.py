"""Pure helpers: reconnect delays (daemon/backoff.py) and the restore policy (daemon/context.py)."""

from __future__ import annotations

import random

import pytest

from daemon.backoff import Backoff, delays
from daemon.context import SUMMARY_ACK, SUMMARY_PREFIX, Conversation, Entry, estimate_tokens


def test_delays_full_jitter_under_a_growing_capped_ceiling() -> None:
    rng = random.Random(7)
    got = [d for d, _ in zip(delays(0.5, 8.0, rng=rng.random), range(200))]
    ceilings = [min(8.0, 0.5 * 2**n) for n in range(200)]
    assert all(0 <= d <= c for d, c in zip(got, ceilings))
    # Jitter is real: late delays spread over the whole [0, cap) range, not pinned at the cap.
    late = got[10:]
    assert min(late) < 2.0 and max(late) > 6.0


def test_delays_with_max_rng_follow_the_ceiling_exactly() -> None:
    got = [d for d, _ in zip(delays(1.0, 10.0, rng=lambda: 1.0), range(6))]
    assert got == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_delays_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        next(delays(0.0, 1.0))
    with pytest.raises(ValueError):
        next(delays(2.0, 1.0))


def test_backoff_resets_after_a_stable_period_only() -> None:
    b = Backoff(1.0, 60.0, stable_period=30.0, rng=lambda: 1.0)
    assert [b.next_delay(t) for t in (0, 1, 2, 3)] == [1.0, 2.0, 4.0, 8.0]
    b.connected(10.0)
    assert b.next_delay(20.0) == 16.0  # up 10 s only: keeps growing
    b.connected(100.0)
    assert b.next_delay(131.0) == 1.0  # up 31 s: back to the start
    assert b.attempts == 1


# -- context -------------------------------------------------------------------------------


def _conv(n: int, text: str = "word " * 10) -> Conversation:
    c = Conversation()
    for i in range(n):
        c.add_exchange(f"question {i} {text}", f"answer {i} {text}")
    return c


def test_restore_turn_by_turn_when_it_fits() -> None:
    c = _conv(3)
    turns = c.restore_turns(budget_tokens=10_000)
    assert [t.role for t in turns] == ["user", "model"] * 3
    assert turns[0].text.startswith("question 0") and turns[-1].text.startswith("answer 2")


def test_restore_one_summary_when_over_budget_keeps_newest_and_ends_with_model() -> None:
    c = _conv(200)
    turns = c.restore_turns(budget_tokens=500)
    assert len(turns) == 2
    assert turns[0].role == "user" and turns[0].text.startswith(SUMMARY_PREFIX)
    assert turns[1].role == "model" and turns[1].text == SUMMARY_ACK
    assert "answer 199" in turns[0].text and "question 0 " not in turns[0].text
    assert "earlier turns left out" in turns[0].text
    assert estimate_tokens(turns[0].text) <= 500


def test_restore_never_ends_with_an_unanswered_question() -> None:
    """PITFALLS.md "Replaying history…": a restore must not hold a question the model
    would answer again."""
    c = _conv(2)
    c.entries.append(Entry("user", "what time is it?", "voice"))
    turns = c.restore_turns(10_000)
    assert turns[-1].role == "model"
    assert all("what time" not in t.text for t in turns)


def test_restore_keeps_typed_context_which_needs_no_answer() -> None:
    c = _conv(1)
    c.add_context("My name is Ana.")
    turns = c.restore_turns(10_000)
    assert turns[-1].role == "user" and turns[-1].text == "My name is Ana."


def test_consecutive_same_role_entries_merge_and_history_is_bounded() -> None:
    c = Conversation(max_entries=5)
    c.add_context("a")
    c.add_context("b")
    assert c.restore_turns(100) == [type(c.restore_turns(100)[0])("user", "a\nb")]
    for i in range(10):
        c.add_exchange(f"q{i}", f"a{i}")
    assert len(c) == 5 and c.entries[-1].text == "a9"


def test_empty_conversation_restores_nothing() -> None:
    assert Conversation().restore_turns(1000) == []
