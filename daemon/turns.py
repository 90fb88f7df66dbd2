"""
The turn machine of the session core: what the *user* experiences of one question, beside
the connection phases of daemon/session.py. Pure: no I/O, no clock.

States::

    IDLE          nothing said is waiting for an answer, nothing plays
    TALKING_LIVE  the button is down; the audio goes out as it is spoken
    TALKING_HELD  the button is down; the audio is kept (offline, a switch, a blocking tool)
    ASKED         an ask (ended turn or typed question) waits for its answer
    ANSWERING     the answer to the oldest ask is arriving
    PLAYING       an answer is playing (it arrived; the speaker has not drained yet)

The session keeps the facts (its FIFO of asks, each with an id; the turn being spoken;
playback) and :func:`next_turn_state` reads the state off them after every event.
``TURN_TABLE`` is the contract: for each (state, cause) the states that may follow, as
h11 writes its tables. A cause is the event type's name, or ``"timer"`` for what the
session's timers do (the maximum turn length, the reply stall, a switch, playback slack,
the backoff), which run after every event. A step the table does not list is a bug in
the core: the session records it (``Session.turn_violations``) and the property test
fails on it.

Legal edges (cause in brackets)::

    IDLE ──[press]──▶ TALKING_LIVE / TALKING_HELD          (held when offline or switching)
    TALKING_HELD ──[connected, tool result, timer]──▶ TALKING_LIVE
    TALKING_LIVE ──[lost, close, switch timer]──▶ TALKING_HELD
    TALKING_* ──[release, max_turn_seconds timer]──▶ ASKED    (the turn is now an ask)
    TALKING_* ──[long hold with nothing said]──▶ IDLE         (a new conversation)
    ASKED ──[model content]──▶ ANSWERING ──[audio]──▶ PLAYING
    ANSWERING / PLAYING ──[turnComplete]──▶ PLAYING / ASKED (next ask) / IDLE
    ASKED ──[empty/rejected turnComplete]──▶ ASKED (asked again once) / IDLE (dropped, reported)
    PLAYING ──[drained, slack timer]──▶ IDLE / ASKED / ANSWERING
    ANSWERING / PLAYING / ASKED ──[press]──▶ TALKING_*        (barge-in: the old ask is cut)
    ASKED / ANSWERING ──[lost, stall timer]──▶ ASKED (sent again) / PLAYING / IDLE (dropped)
    any ──[new conversation]──▶ IDLE / TALKING_*  ;  any ──[Shutdown]──▶ IDLE

The states cannot tell an ask *answered* from one *dropped* (both leave ANSWERING for
IDLE when a connection goes), so how each ask ends is checked too: :func:`ask_end` reads
the ending off the ask's facts and ``ASK_ENDINGS`` says which endings each cause may
produce. An answer needs its ``turnComplete``, or — when the connection went first — the
whole of it (``generationComplete``, or a tool call, F17); only part of an answer is
``CUT_SHORT``, which no cause may produce: such an ask is asked again or dropped and
reported, never counted answered (the chaos day's "[1, 0, 1, 0]" turn).
"""

from __future__ import annotations

import enum

__all__ = [
    "TurnState",
    "TURN_TABLE",
    "turn_state_of",
    "next_turn_state",
    "AskEnd",
    "ASK_ENDINGS",
    "ask_end",
]


class TurnState(enum.Enum):
    IDLE = "idle"
    TALKING_LIVE = "talking-live"
    TALKING_HELD = "talking-held"
    ASKED = "asked"
    ANSWERING = "answering"
    PLAYING = "playing"


IDLE, TALKING_LIVE, TALKING_HELD, ASKED, ANSWERING, PLAYING = TurnState
_TALKING = frozenset({TALKING_LIVE, TALKING_HELD})
_REPLY = frozenset({ASKED, ANSWERING, PLAYING})
_ALL = frozenset(TurnState)


def turn_state_of(
    talking: bool, held: bool, owed: bool, arriving: bool, playing: bool
) -> TurnState:
    """The state the facts say: the button first, then what is heard, then what is owed."""
    if talking:
        return TALKING_HELD if held else TALKING_LIVE
    if playing:
        return PLAYING
    if arriving:
        return ANSWERING
    if owed:
        return ASKED
    return IDLE


def _row(
    *pairs: tuple[TurnState | frozenset[TurnState], frozenset[TurnState]],
) -> dict[TurnState, frozenset[TurnState]]:
    out: dict[TurnState, frozenset[TurnState]] = {}
    for frm, to in pairs:
        for s in frm if isinstance(frm, frozenset) else (frm,):
            out[s] = out.get(s, frozenset()) | to
    return out


_PRESS = _row((frozenset({IDLE}) | _REPLY, _TALKING))
_RELEASE = _row((_TALKING, frozenset({ASKED, ANSWERING, PLAYING})))
_HELD = _row(
    (_TALKING, frozenset({IDLE, ASKED, ANSWERING, PLAYING})),
    (frozenset({IDLE}) | _REPLY, frozenset({IDLE})),
)
# Server content, turnComplete, tool calls: replies move on; the button is the user's.
_SERVER = _row(
    (frozenset({IDLE}) | _REPLY, frozenset({IDLE}) | _REPLY),
    (TALKING_LIVE, frozenset({TALKING_LIVE})),
    (TALKING_HELD, _TALKING),
)
# The connection went (closed, failed) or came (setupComplete is a server event).
_CONNECTION = _row((frozenset({IDLE}) | _REPLY, frozenset({IDLE}) | _REPLY), (_TALKING, _TALKING))
_PLAYBACK = _row((PLAYING, frozenset({IDLE, ASKED, ANSWERING})))
_TIMER = _row(
    (TALKING_LIVE, frozenset({TALKING_HELD}) | _REPLY),  # switch; max turn length
    (TALKING_HELD, frozenset({TALKING_LIVE}) | _REPLY),  # sent at last; max turn
    (ASKED, frozenset({IDLE})),  # dropped after a stall
    (ANSWERING, frozenset({IDLE, ASKED, PLAYING})),  # stall, switch
    (PLAYING, frozenset({IDLE, ASKED, ANSWERING})),
)  # drained by the clock

TURN_TABLE: dict[str, dict[TurnState, frozenset[TurnState]]] = {
    "ButtonPressed": _PRESS,
    "PttStart": _PRESS,
    "ButtonReleased": _RELEASE,
    "PttStop": _RELEASE,
    "ButtonHeld": _HELD,
    "ServerEvents": _SERVER,
    "ToolDone": _SERVER,
    "ConnectionClosed": _CONNECTION,
    "ConnectionFailed": _CONNECTION,
    "PlaybackDrained": _PLAYBACK,
    "SendText": _row((IDLE, frozenset({ASKED}))),  # a typed question is owed at once
    "Announce": _row((IDLE, frozenset({ASKED}))),  # an announcement asked of the model
    "NewConversation": _row((_ALL, frozenset({IDLE}) | _TALKING)),
    "Shutdown": _row((_ALL, frozenset({IDLE}))),
    # What timers do after any event: end an endless turn, give up on a stalled reply,
    # switch connections (a live turn becomes held, a held one live), drain by the clock,
    # send the next ask.
    "timer": _TIMER,
}
"""cause → {state: the states that may follow}. Staying in the same state is always
legal; a cause not listed changes nothing (MicFrame, Start, SetInstruction, …)."""


def next_turn_state(
    state: TurnState, cause: str, facts: tuple[bool, bool, bool, bool, bool]
) -> tuple[TurnState, bool]:
    """The state after ``cause`` given the session's ``facts`` (see :func:`turn_state_of`),
    and whether ``TURN_TABLE`` allows the step."""
    new = turn_state_of(*facts)
    if new is state:
        return new, True
    row = TURN_TABLE.get(cause)
    return new, row is not None and new in row.get(state, frozenset())


class AskEnd(enum.Enum):
    ANSWERED = "answered"  # its turnComplete arrived
    ANSWERED_BEFORE_CLOSE = "answered before the close"  # whole, then the connection went
    CUT_SHORT = "cut short"  # part of an answer taken for one: never legal
    INTERRUPTED = "interrupted"  # a barge-in, a new conversation
    DROPPED = "dropped"  # given up on, reported


def ask_end(how: str, completed: bool, generated: bool, called: bool) -> AskEnd:
    """How an ask the core resolved ``how`` ("answered", "interrupted", "dropped") ended,
    by its facts: its turnComplete arrived, its generationComplete arrived, it made a
    tool call the core ran."""
    if how == "interrupted":
        return AskEnd.INTERRUPTED
    if how == "dropped":
        return AskEnd.DROPPED
    if completed:
        return AskEnd.ANSWERED
    if generated or called:
        return AskEnd.ANSWERED_BEFORE_CLOSE
    return AskEnd.CUT_SHORT


_GONE = frozenset({AskEnd.ANSWERED_BEFORE_CLOSE, AskEnd.INTERRUPTED, AskEnd.DROPPED})
ASK_ENDINGS: dict[str, frozenset[AskEnd]] = {
    # turnComplete (answered, or the end of a reply the user talked over); a second
    # RESPONSE_REJECTED (dropped).
    "ServerEvents": frozenset({AskEnd.ANSWERED, AskEnd.INTERRUPTED, AskEnd.DROPPED}),
    # The connection went (lost, or our close completed or timed out): what it owed ends
    # whole, cut by a barge-in, or dropped after two connections.
    "ConnectionClosed": _GONE,
    "ConnectionFailed": _GONE,
    "timer": _GONE,
    # The conversation is forgotten: what it asked is nobody's question any more.
    "NewConversation": frozenset({AskEnd.INTERRUPTED}),
    "ButtonHeld": frozenset({AskEnd.INTERRUPTED}),
}
"""cause → the ways an ask may end on it. A cause not listed ends none."""
