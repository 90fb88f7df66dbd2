"""A handle stands for the session state the server had when it issued it.

Content we send without a turn (the restore of a fresh session, typed context, an
instruction update) is in the server's history only once the server has *read* it, and
the Gemini API gives no receipt for that. A handle that reaches us after we sent such
content may have been issued before the server read it: resuming with it brings back a
session without that content (the local server issues one right after setupComplete,
before the restore arrives). Found by tests/runtime/test_two_hours.py: a fresh session
with no turn of its own before the next goAway resumed with its setup-time handle and
lost the whole restored conversation.
"""

from __future__ import annotations

from daemon import wire
from daemon.session import CloseConnection, SendText, SessionSettings, SetInstruction
from tests.core.harness import Harness, exchange, kinds, live, reopen


def _rolled_over(h: Harness) -> list[dict]:
    """Roll over to a fresh session (an instruction change on a model that needs one);
    returns what was sent on the new connection."""
    h.clear()
    h.feed(SetInstruction("Speak French."))
    assert h.of(CloseConnection)
    first = reopen(h)
    assert h.setups()[-1]["sessionResumption"] == {}
    assert kinds(first) == ["content"]
    return first


def _restored_texts(messages: list[dict]) -> list[str]:
    content = next(m["clientContent"] for m in messages if "clientContent" in m)
    return [t["parts"][0]["text"] for t in content["turns"]]


def test_a_handle_that_may_predate_the_restore_is_never_resumed() -> None:
    h = live(SessionSettings(resume_margin=5.0))
    exchange(h, "my name is Ana", "Hello Ana.", handle="h1")
    _rolled_over(h)
    # The server hands out a handle at setup time, before it has read the restore.
    h.server(wire.ResumptionUpdate("before-restore", True))
    assert h.session.snapshot().handle is None, "a restart would resume without the restore"
    h.clear()
    h.server(wire.GoAway(50.0))
    # Waiting for a better handle is pointless (only a turn could bring one, and a turn
    # pressed now is held for the next connection): switch now, to a fresh session.
    assert h.of(CloseConnection), "waited for a handle that cannot come"
    assert not any("deadline" in c.reason for c in h.of(CloseConnection))
    again = reopen(h)
    assert h.setups()[-1]["sessionResumption"] == {}, "resumed a session without the restore"
    assert _restored_texts(again) == ["my name is Ana", "Hello Ana."]
    assert h.session.stats(h.now).resumes == 0


def test_a_turn_answered_after_the_restore_makes_the_next_handle_trustworthy() -> None:
    h = live()
    exchange(h, "my name is Ana", "Hello Ana.", handle="h1")
    _rolled_over(h)
    h.server(wire.ResumptionUpdate("before-restore", True))
    # The server answers a turn we sent after the restore: it read the restore first
    # (client messages are read in order), so the handle after that answer includes it.
    exchange(h, "what is my name", "Ana.", handle="after-turn")
    assert h.session.snapshot().handle == "after-turn"
    h.clear()
    h.server(wire.GoAway(50.0))
    assert h.of(CloseConnection)
    assert reopen(h) == [], "history replayed into a resumed session"
    assert h.setups()[-1]["sessionResumption"] == {"handle": "after-turn"}


def test_typed_context_is_not_lost_to_a_handle_issued_before_it_was_read() -> None:
    h = live()
    exchange(h, "hi", "hello", handle="h1")
    h.clear()
    h.feed(SendText("The user is in Lisbon.", turn_complete=False))
    assert kinds(h.sent()) == ["content"]
    # A handle already on its way (issued before the server read the context).
    h.server(wire.ResumptionUpdate("in-flight", True))
    h.server(wire.GoAway(50.0))
    assert h.of(CloseConnection)
    again = reopen(h)
    assert h.setups()[-1]["sessionResumption"] == {}, "resumed a session without the context"
    assert _restored_texts(again) == ["hi", "hello", "The user is in Lisbon."]


def test_a_resumed_connection_with_nothing_unread_still_resumes_on_its_setup_handle() -> None:
    """The fix must not cost resumes: after a resume nothing of ours is unread, so the
    handle the server issues at setup stands for everything (idle connection)."""
    h = live()
    exchange(h, "hi", "hello", handle="h1")
    h.server(wire.GoAway(50.0))
    assert reopen(h) == []
    h.server(wire.ResumptionUpdate("setup-time", True))
    h.clear()
    h.server(wire.GoAway(50.0))
    assert h.of(CloseConnection)
    h.finish_close()
    assert h.setups()[-1]["sessionResumption"] == {"handle": "setup-time"}
