"""
The conversation as the user experiences it, and how to give it back to a new Live session.

Pure: no I/O, no clock. A *conversation* spans hours and many Live API sessions
(session.py explains the three layers). What we remember of it is text:

* the user's spoken turns, from ``inputTranscription``;
* the model's spoken answers, from ``outputTranscription``;
* typed questions and typed context (``SendText``).

When a *fresh* session replaces an old one (rollover at the session cap, context window
full, an instruction change on a model that cannot take it mid-session, or a refused
handle) :meth:`Conversation.restore_turns` decides what to send, once, as ``clientContent``
with ``turnComplete: false`` (LIVE_PROTOCOL.md §3):

* everything turn by turn when it fits ``budget_tokens``;
* otherwise one summary message holding the most recent turns that fit, followed by a
  short model acknowledgement, so the restored history ends on a model turn.

Two rules come from PITFALLS.md ("Replaying history on every reconnect"): a restore never
contains a question the model has not answered (it would answer it again, or twice), and
it is never sent into a *resumed* session (the server kept the history; the caller,
session.py, only asks for a restore after a fresh setup).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from daemon.wire import Turn

__all__ = ["Entry", "Conversation", "estimate_tokens", "SUMMARY_PREFIX", "SUMMARY_ACK"]

SUMMARY_PREFIX = (
    "For context only, nothing here needs an answer. "
    "This is what we said earlier in this conversation:"
)
"""Opens the one-message summary; phrased as a statement so the model does not reply to it."""
SUMMARY_ACK = "Understood."
"""Model turn after a summary, so the restored history ends with the model (no open question)."""

_TURN_OVERHEAD = 4  # tokens per turn for role and framing; a rough but safe allowance


def estimate_tokens(text: str) -> int:
    """About 4 characters per text token (the usual rule of thumb for Gemini tokenizers)."""
    return (len(text) + 3) // 4 + _TURN_OVERHEAD


@dataclass(frozen=True)
class Entry:
    """One remembered turn. ``role`` is "user" or "model"; ``kind`` says where it came from:
    "voice", "typed" (a question asked by text), "context" (typed, needs no answer)."""

    role: str
    text: str
    kind: str = "voice"


class Conversation:
    """Remembered turns of one conversation, oldest first, at most ``max_entries``."""

    def __init__(self, entries: Iterable[Entry] = (), max_entries: int = 400) -> None:
        self.max_entries = max_entries
        self.entries: list[Entry] = []
        for e in entries:
            self._append(e)

    def __len__(self) -> int:
        return len(self.entries)

    def add_exchange(self, user_text: str, model_text: str, kind: str = "voice") -> None:
        """An answered turn: the user's words (may be empty for a typed question already
        added) and the model's answer. Empty texts are not remembered."""
        if user_text.strip():
            self._append(Entry("user", user_text.strip(), kind))
        if model_text.strip():
            self._append(Entry("model", model_text.strip(), "voice"))

    def add_context(self, text: str) -> None:
        """Typed context the user gave with ``turnComplete: false`` (no answer expected)."""
        if text.strip():
            self._append(Entry("user", text.strip(), "context"))

    def clear(self) -> None:
        """Forget everything (a new conversation)."""
        self.entries.clear()

    def restore_turns(self, budget_tokens: int) -> list[Turn]:
        """What to send into a fresh session (``clientContent``, ``turnComplete: false``).

        Returns an empty list when there is nothing to restore.
        """
        entries = self._restorable()
        if not entries:
            return []
        turns = _merge(entries)
        if sum(estimate_tokens(t.text) for t in turns) <= budget_tokens:
            return turns
        return _summary(entries, budget_tokens)

    def _restorable(self) -> list[Entry]:
        # A user "voice"/"typed" entry with no model answer after it is a question the
        # model never answered (its reply was lost). Restoring it would make the model
        # answer it at the next turn on top of the new question: drop it. Context entries
        # need no answer and stay.
        out = list(self.entries)
        while out and out[-1].role == "user" and out[-1].kind != "context":
            out.pop()
        return out

    def _append(self, entry: Entry) -> None:
        self.entries.append(entry)
        if len(self.entries) > self.max_entries:
            del self.entries[: len(self.entries) - self.max_entries]


def _merge(entries: Sequence[Entry]) -> list[Turn]:
    # Consecutive entries of one role become one turn: the API is happy with either, but
    # alternating roles read as a dialogue and cost less framing.
    turns: list[Turn] = []
    for e in entries:
        if turns and turns[-1].role == e.role:
            turns[-1] = Turn(e.role, turns[-1].text + "\n" + e.text)
        else:
            turns.append(Turn(e.role, e.text))
    return turns


def _summary(entries: Sequence[Entry], budget_tokens: int) -> list[Turn]:
    # Extractive: the newest lines that fit, older ones counted but left out. A local
    # summary needs no model call, so a rollover never waits on one.
    budget = max(0, budget_tokens - estimate_tokens(SUMMARY_PREFIX) - estimate_tokens(SUMMARY_ACK))
    lines: list[str] = []
    used = 0
    for e in reversed(entries):
        who = "User" if e.role == "user" else "You"
        line = f"{who}: {e.text}"
        cost = (len(line) + 4) // 4
        if used + cost > budget:
            room = (budget - used) * 4 - 1
            if not lines and room > 20:
                # A single huge turn: keep its end rather than nothing.
                lines.append(f"{who}: …{e.text[-(room - len(who) - 3) :]}")
            break
        lines.append(line)
        used += cost
    omitted = len(entries) - len(lines)
    body = [SUMMARY_PREFIX]
    if omitted:
        body.append(f"[{omitted} earlier turns left out]")
    body.extend(reversed(lines))
    return [Turn("user", "\n".join(body)), Turn("model", SUMMARY_ACK)]
