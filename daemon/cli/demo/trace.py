"""
What ``voiced demo`` watches and reports: the timeline, the mic tap, the totals.

* :class:`Tap` sits between the simulated hardware and the supervisor's inbox and
  keeps, in inbox order, every mic frame and button edge. From that it rebuilds the
  exact audio of each push-to-talk turn (pre-roll included, the way the session core
  assembles it) so the demo can compare it, digest for digest, with what the Live
  server says it received — an independent check of "zero frames lost"
  (PITFALLS.md "Audio dropped during reconnect").
* :class:`Trace` is a supervisor listener (``Supervisor.subscribe``): it turns the
  effects the core emits into a readable timeline — wall time, the nominal
  "real-time equivalent", LED changes, what was sent, what was heard, session events
  (goAway, resume, rollover, retries) — and keeps the counts the totals need.
* :func:`speech` makes the utterances the simulated user says: espeak-ng when
  installed (its 22.05 kHz WAV is resampled to 16 kHz by the sim mic), else a
  speech-shaped synthetic signal.

Nothing here creates tasks; the demo's script (daemon/cli/demo/demo.py) runs as a
supervisor companion.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from daemon.events import ButtonPressed, ButtonReleased, DeviceState, Event, MicFrame
from daemon.session import (
    CloseConnection,
    Effect,
    FlushPlayback,
    Notify,
    OpenConnection,
    Persist,
    Play,
    SendFrame,
    ShowStates,
)

__all__ = ["Tap", "Trace", "TurnRecord", "speech", "fmt_nominal"]


# ---------------------------------------------------------------------------------------------
# Speech for the simulated user


def speech(text: str, workdir: Path, use_espeak: bool = True) -> tuple[bytes, int, str]:
    """``text`` as s16le mono PCM: (pcm, rate, how it was made).

    espeak-ng writes a 22.05 kHz WAV (VIRTUAL_AUDIO.md "Speech for tests"); the sim mic
    resamples whatever rate it is given to 16 kHz. Without espeak-ng (or when it
    fails) the local server's speech-shaped synthetic signal stands in.
    """
    from hw.sim import read_wav

    exe = shutil.which("espeak-ng") if use_espeak else None
    if exe is not None:
        path = workdir / f"say-{hashlib.sha256(text.encode()).hexdigest()[:10]}.wav"
        try:
            subprocess.run(
                [exe, "-w", str(path), text], check=True, capture_output=True, timeout=30
            )
            pcm, rate = read_wav(path)
            if pcm:
                return pcm, rate, "espeak-ng"
        except (OSError, subprocess.SubprocessError, ValueError):
            pass  # a broken espeak must not stop the demo: fall back below
    from daemon.liveserver.model import OUTPUT_RATE, synthetic_speech

    return synthetic_speech(text), OUTPUT_RATE, "synthetic"


# ---------------------------------------------------------------------------------------------
# The mic tap


class Tap:
    """Forwards hardware events to ``post`` and remembers mic frames and button edges.

    Recording and forwarding happen under one lock, so the order kept here is the
    order the inbox (a FIFO) hands the events to the session core.
    """

    def __init__(self, post: Callable[[Event], None]) -> None:
        self._post = post
        self._lock = threading.Lock()
        self._log: list[bytes | bool] = []  # frame bytes, True = press, False = release

    def post(self, event: Event) -> None:
        """The ``post`` given to the simulated hardware (any thread)."""
        with self._lock:
            if isinstance(event, MicFrame):
                self._log.append(event.pcm)
            elif isinstance(event, ButtonPressed):
                self._log.append(True)
            elif isinstance(event, ButtonReleased):
                self._log.append(False)
            self._post(event)

    def turns(self, pre_roll_ms: int) -> list[bytes]:
        """The audio of every push-to-talk turn so far (ended or not), pre-roll first.

        Mirrors the core's ring (daemon/session.py ``_on_mic_frame``): between turns it
        keeps the shortest run of newest frames holding at least ``pre_roll_ms``.
        """
        limit = pre_roll_ms * 32  # bytes per ms at 16 kHz, 16-bit mono
        with self._lock:
            log = list(self._log)
        out: list[bytes] = []
        ring: list[bytes] = []
        ring_bytes = 0
        turn: bytearray | None = None
        for item in log:
            if item is True:
                if turn is None:
                    turn = bytearray(b"".join(ring))
                    ring, ring_bytes = [], 0
            elif item is False:
                if turn is not None:
                    out.append(bytes(turn))
                    turn = None
            elif turn is not None:
                turn += item
            else:
                ring.append(item)
                ring_bytes += len(item)
                while ring and ring_bytes - len(ring[0]) >= limit:
                    ring_bytes -= len(ring.pop(0))
        if turn is not None:
            out.append(bytes(turn))
        return out


# ---------------------------------------------------------------------------------------------
# The timeline


def fmt_nominal(seconds: float) -> str:
    """Nominal seconds as H:MM:SS.s (the real-time equivalent)."""
    seconds = max(0.0, seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}"


@dataclass
class TurnRecord:
    """One thing the simulated user said or typed, and what became of it."""

    number: int
    kind: str  # "voice" or "typed"
    text: str
    spans: list[str] = field(default_factory=list)  # "goAway", "resume", "barge-in", ...
    asked_at: float | None = None  # nominal, at release / send
    replies_before: int = 0  # the core's reply count when it was asked
    reply_audio_s: float = 0.0
    answered: bool = False
    heard: str = ""
    reply: str = ""
    frames: int = 0
    digest: str = ""
    delivered: bool | None = None  # its exact audio reached the server (embedded only)


class Trace:
    """A supervisor listener that prints the timeline and keeps the demo's counts.

    Args:
        supervisor: the one being watched (its clock, stats, states and conversation).
        out: where timeline lines go (``print``).
    """

    def __init__(self, supervisor: Any, out: Callable[[str], None]) -> None:
        self.sup = supervisor
        self.out = out
        self.t0 = time.monotonic()
        self.led: DeviceState | None = None
        self.led_states_seen: list[str] = []
        self.goaways = 0
        self.errors: list[str] = []
        self.switches: list[tuple[float, str]] = []  # (nominal, reason) of our closes
        self.turns: list[TurnRecord] = []
        self.current: TurnRecord | None = None  # the turn replies are attributed to
        self._replies_seen = 0
        self._turn_frames = 0

    # -- output

    def line(self, kind: str, text: str) -> None:
        """One timeline line: wall seconds, nominal time, kind, text."""
        wall = time.monotonic() - self.t0
        try:
            nominal = self.sup.now()
        except RuntimeError:  # no loop yet
            nominal = 0.0
        self.out(f"{wall:6.2f}s  {fmt_nominal(nominal):>10}  {kind:<8} {text}")

    def error(self, text: str) -> None:
        """Record a failure of the demo itself (counted in ``errors``)."""
        self.errors.append(text)
        self.line("ERROR", text)

    # -- the listener

    def __call__(self, effect: Effect) -> None:
        if isinstance(effect, SendFrame):
            self._on_send(effect.frame)
        elif isinstance(effect, Play):
            if self.current is not None:
                if self.current.reply_audio_s == 0.0:
                    self.line("speaker", f"reply to turn {self.current.number} starts playing")
                self.current.reply_audio_s += len(effect.pcm) / (2 * effect.rate)
        elif isinstance(effect, ShowStates):
            self._on_states(effect.states)
        elif isinstance(effect, Notify):
            self._on_notify(effect)
        elif isinstance(effect, OpenConnection):
            how = (
                "resuming with the last handle"
                if '"handle"' in effect.setup_frame
                else "new session"
            )
            self.line("net", f"opening connection {effect.conn_id} ({how})")
        elif isinstance(effect, CloseConnection):
            self.switches.append((self.sup.now(), effect.reason))
            self.line("net", f"closing connection {effect.conn_id} ({effect.code} {effect.reason})")
        elif isinstance(effect, FlushPlayback):
            self.line("speaker", "playback flushed (barge-in or interruption)")
        elif isinstance(effect, Persist):
            self._on_persist()

    def _on_send(self, frame: str) -> None:
        if frame.startswith('{"realtimeInput":{"audio"'):  # wire.encode_audio, the hot path
            self._turn_frames += 1
            return
        try:
            message = json.loads(frame)
        except ValueError:
            return
        if "realtimeInput" in message:
            what = next(iter(message["realtimeInput"]), "?")
            if what == "activityStart":
                self._turn_frames = 0
                self.line("sent", "activityStart")
            elif what == "activityEnd":
                self.line(
                    "sent", f"activityEnd ({self._turn_frames} audio frames on this connection)"
                )
            else:
                self.line("sent", f"realtimeInput.{what}")
        elif "clientContent" in message:
            body = message["clientContent"]
            turns = body.get("turns", [])
            text = " / ".join(p.get("text", "") for t in turns for p in t.get("parts", []))
            kind = "question" if body.get("turnComplete") else "context (no answer wanted)"
            self.line("sent", f"clientContent {kind}: {_short(text, 70)!r}")
        else:
            self.line("sent", next(iter(message), "?"))

    def _on_states(self, states: frozenset[DeviceState]) -> None:
        from hw.led import pick_state

        shown = pick_state(states)
        if shown is not self.led:
            before = self.led.value if self.led is not None else "-"
            self.led = shown
            if shown.value not in self.led_states_seen:
                self.led_states_seen.append(shown.value)
            self.line("LED", f"{before} → {shown.value}")

    def _on_notify(self, effect: Notify) -> None:
        if effect.level == "debug":
            return
        if effect.message.startswith("goAway"):
            self.goaways += 1
        if effect.level == "error":
            self.errors.append(effect.message)
        self.line("session", effect.message)

    def _on_persist(self) -> None:
        replies = self.sup.session.counts["replies"]
        if replies == self._replies_seen:
            return
        self._replies_seen = replies
        entries = self.sup.session.conversation.entries
        user = next((e.text for e in reversed(entries[-2:]) if e.role == "user"), "")
        model = next((e.text for e in reversed(entries[-2:]) if e.role == "model"), "")
        if user:
            self.line("heard", _short(user, 90))
        self.line("reply", _short(model, 90) or "(no transcript)")
        turn = self.current
        if turn is not None and replies > turn.replies_before:
            turn.heard, turn.reply = user, model

    # -- numbers

    def begin_turn(self, kind: str, text: str) -> TurnRecord:
        """A new scripted turn (replies from now on are attributed to it)."""
        turn = TurnRecord(len(self.turns) + 1, kind, text)
        self.turns.append(turn)
        return turn

    def asked(self, turn: TurnRecord) -> None:
        """``turn`` was released or sent: its answer is what comes next."""
        turn.asked_at = self.sup.now()
        turn.replies_before = self.sup.session.counts["replies"]
        self.current = turn


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
