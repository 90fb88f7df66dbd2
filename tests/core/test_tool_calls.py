"""Tool calls in the core (issue 10 item 5; FIELD_REPORTS.md F10, F18, Part 3): which calls
run, what the model gets back and when, and what the mic may send meanwhile."""

from __future__ import annotations

from daemon import wire
from daemon.events import ButtonPressed, ButtonReleased, DeviceState
from daemon.session import (
    CancelTool,
    CloseConnection,
    ConnectionClosed,
    ConnectionOpened,
    RunTool,
    SessionSettings,
    ToolDone,
)
from tests.core.harness import audio_sent, call, come_back, kinds, live, responses, talk

TOOLS = SessionSettings(tools=("lights", "timer"), backoff_base=0.1)


def test_a_declared_call_runs_shows_working_and_its_result_goes_back() -> None:
    h = live(TOOLS)
    talk(h)
    call(h, ("c1", "lights", {"on": True}))
    assert h.of(RunTool) == [RunTool("c1", "lights", {"on": True})]
    assert DeviceState.WORKING in h.session.states()
    assert h.session.stats(h.now).tools_running == 1
    h.feed(ToolDone("c1", "lights", {"result": "on"}))
    assert responses(h) == [{"id": "c1", "name": "lights", "response": {"result": "on"}}]
    assert DeviceState.WORKING not in h.session.states()
    h.reply("The lights are on.")
    assert h.session.stats(h.now).asks_answered == 1


def test_an_undeclared_name_is_answered_at_once_and_never_run() -> None:
    """F18: an unregistered tool with no response is dead air until a timeout."""
    h = live(TOOLS)
    talk(h)
    call(h, ("c1", "launch_rockets", {}), ("c2", "timer", {"s": 60}))
    assert [r.name for r in h.of(RunTool)] == ["timer"]
    assert responses(h) == [
        {"id": "c1", "name": "launch_rockets", "response": {"error": "unknown tool launch_rockets"}}
    ]


def test_a_cancelled_call_is_stopped_and_its_late_result_never_sent() -> None:
    h = live(TOOLS)
    talk(h)
    call(h, ("c1", "timer", {"s": 60}))
    h.server(wire.ToolCallCancellation(("c1",)))
    assert h.of(CancelTool) == [CancelTool("c1")]
    h.feed(ToolDone("c1", "timer", {"result": "set"}))
    assert responses(h) == []
    assert DeviceState.WORKING not in h.session.states()


def test_while_a_blocking_call_is_pending_the_mic_is_held_then_sent_after_the_result() -> None:
    """F10: realtime audio during a pending blocking call is closed 1008 "The operation was
    aborted."; the press is captured and sent after the toolResponse."""
    h = live(SessionSettings(tools=("lights",), tools_blocking=True))
    talk(h)
    call(h, ("c1", "lights", {"on": True}))
    h.clear()
    h.feed(ButtonPressed())
    said = h.mic(10)
    assert h.sent() == [], "mic audio went out while a blocking call was pending"
    assert DeviceState.LISTENING in h.session.states()
    h.feed(ToolDone("c1", "lights", {"result": "on"}))
    msgs = h.sent()
    assert kinds(msgs)[0] == "?" and "toolResponse" in msgs[0]
    assert kinds(msgs)[1] == "start" and audio_sent(msgs)[-10:] == said
    more = h.mic(3)
    h.feed(ButtonReleased(0.3))
    assert audio_sent(h.sent())[-3:] == more and kinds(h.sent())[-1] == "end"


def test_non_blocking_models_do_not_hold_the_mic() -> None:
    h = live(TOOLS, model="gemini-3.8-live")
    talk(h)
    call(h, ("c1", "timer", {"s": 5}))
    h.clear()
    h.feed(ButtonPressed())
    h.mic(3)
    assert kinds(h.sent())[:1] == ["start"]


def test_a_result_whose_connection_died_is_delivered_on_the_resumed_session() -> None:
    """NON_BLOCKING (gemini-3.8): the turn completes (and a handle follows) while the tool
    still runs; the connection dies; the result goes out on the resumed session (F18:
    results silently dropped while reconnecting leave the model waiting)."""
    h = live(TOOLS, model="gemini-3.8-live")
    talk(h)
    call(h, ("c1", "timer", {"s": 60}))
    h.reply("Setting a timer.", handle="h1")
    h.feed(ConnectionClosed(h.conn, 1006, ""))
    h.feed(ToolDone("c1", "timer", {"result": "set"}))
    assert responses(h) == []
    conn = come_back(h)
    assert h.setups()[-1]["sessionResumption"] == {"handle": "h1"}
    assert responses(h, conn) == [{"id": "c1", "name": "timer", "response": {"result": "set"}}]
    # The model speaking about the result now is an answer, not a phantom.
    h.clear()
    h.reply("Your timer is set.")
    assert h.session.stats(h.now).phantom_replies == 0


def test_a_blocking_call_cut_by_a_lost_connection_goes_fresh_and_its_result_is_context() -> None:
    """The only handle predates the call (the server hands out none mid-tool, F3); resuming
    with it and answering c1 there is refused 1008 "Requested entity was not found."."""
    h = live(TOOLS)
    talk(h)
    call(h, ("c1", "timer", {"s": 60}))
    h.feed(ConnectionClosed(h.conn, 1006, ""))
    conn = come_back(h)
    assert h.setups()[-1]["sessionResumption"] == {}
    h.feed(ToolDone("c1", "timer", {"result": "set"}))
    assert responses(h, conn) == []
    context = str([m for m in h.sent(conn=conn) if "clientContent" in m])
    assert "timer tool returned" in context


def test_after_a_rollover_a_late_result_is_summarised_into_the_restored_context() -> None:
    h = live(TOOLS)
    talk(h)
    call(h, ("c1", "timer", {"s": 60}))
    h.feed(
        ConnectionClosed(h.conn, 1008, "Operation is not implemented, or supported, or enabled.")
    )
    h.feed(ToolDone("c1", "timer", {"result": "set"}))
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    assert responses(h, h.conn) == [], "a toolResponse into a session that never made the call"
    restored = str([m for m in h.sent(conn=h.conn) if "clientContent" in m])
    assert "timer tool returned" in restored and "set" in restored


def test_a_phantom_call_after_a_resume_is_answered_not_run() -> None:
    """F7: phantom tool calls 2–3 s after a reconnect (save_meeting_note, open_url)."""
    h = live(TOOLS)
    h.server(wire.GoAway(20.0))
    h.finish_close()
    h.feed(ConnectionOpened(h.conn))
    h.server(wire.SetupComplete())
    h.clear()
    call(h, ("p1", "lights", {"on": False}))
    assert not h.of(RunTool)
    assert "no user asked" in responses(h)[0]["response"]["error"]


def test_the_reply_guard_counts_from_the_tool_result_not_from_the_call() -> None:
    """A tool may run longer than half the reply guard (a configured timeout of 60 s is
    allowed): the model can only answer once it has the result, so the server gets the
    whole ``reply_timeout`` from the toolResponse, not what is left of it since the
    toolCall."""
    s = SessionSettings(tools=("lights",), tools_blocking=True)
    h = live(s)
    talk(h)
    call(h, ("c1", "lights", {"on": True}))
    h.advance(s.reply_timeout - 5)  # the tool runs 25 s: no stall meanwhile
    h.feed(ToolDone("c1", "lights", {"result": "on"}))
    conn = h.conn
    h.clear()
    h.advance(s.reply_timeout - 1)  # the model still thinking about the result
    assert not h.of(CloseConnection), "stalled before the server had reply_timeout"
    assert h.session.phase.value == "live" and h.conn == conn
    h.reply("The lights are on.")
    assert h.session.stats(h.now).asks_answered == 1


def test_a_server_silent_after_a_tool_result_is_still_a_stall() -> None:
    s = SessionSettings(tools=("lights",), tools_blocking=True)
    h = live(s)
    talk(h)
    call(h, ("c1", "lights", {"on": True}))
    h.advance(10)
    h.feed(ToolDone("c1", "lights", {"result": "on"}))
    h.clear()
    h.advance(s.reply_timeout - 0.1)
    assert not h.of(CloseConnection)
    h.advance(0.2)
    assert [c.reason for c in h.of(CloseConnection)] == ["stalled"]
