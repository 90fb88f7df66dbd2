"""End-to-end: a simulated two-hour conversation against the local Live server.

Push-to-talk turns at seeded random moments, some deliberately pressed while a switch
is pending or in progress; the server cuts connections at 6 min (goAway 50 s before,
as users have seen) and sessions at 15 min. Faults are injected along the way
(1006, 1011, stall, silent after goAway with the user talking, handle refused) and a
1007 at the end (the key revoked: the fresh setup after it is refused).
Checked against the server's own inspection:

* ≥ 10 resumes and ≥ 7 rollovers;
* every user turn answered exactly once, and the audio the server got for it is
  byte for byte the audio captured for it (pre-roll included): 0 frames lost;
* every session untouched by a fault received exactly the captured audio (digest);
* each session after a rollover starts with the restored conversation;
* each fault ends in the right state.
"""

from __future__ import annotations

import asyncio
import hashlib
import random

from daemon.events import ButtonPressed, ButtonReleased, DeviceState
from daemon.liveserver import LiveServer, ServerLimits
from daemon.runtime.connection import Keepalive
from daemon.session import CloseConnection, Notify, OpenConnection, SessionSettings
from tests.runtime.harness import Rig, run, until

SCALE = 400.0
DURATION = 7200.0  # nominal seconds
PRE_ROLL_FRAMES = 15


class Conversation:
    """The test's side: drives turns and remembers what was captured for each."""

    def __init__(self, rig: Rig, server: LiveServer, seed: int) -> None:
        self.rig, self.server = rig, server
        self.rng = random.Random(seed)
        self.turns: list[bytes] = []  # captured audio per turn (pre-roll + speech)
        self.held_across_switch = 0
        self.timeline: list[str] = []

    def now(self) -> float:
        return self.rig.sup.now()

    async def sleep(self, nominal: float) -> None:
        await asyncio.sleep(nominal / SCALE)

    async def turn(self, seconds: float, across_switch: bool = False, before_release=None) -> bytes:
        rig = self.rig
        idle = rig.mic.feed(20)
        if across_switch:
            # Wait for a switch to be wanted or under way, then press right into it.
            await until(
                lambda: (
                    rig.phase in ("closing", "connecting")
                    or DeviceState.GOING_AWAY in rig.sup.states()
                ),
                timeout=30,
                what="a pending switch",
            )
            self.held_across_switch += 1
        rig.inbox.post(ButtonPressed())
        frames = int(seconds / 0.02)
        spoken: list[bytes] = []
        while len(spoken) < frames:  # paced in nominal time, 0.2 s per burst
            spoken += rig.mic.feed(min(10, frames - len(spoken)))
            await self.sleep(0.2)
        if before_release is not None:
            await before_release()
        rig.inbox.post(ButtonReleased(seconds))
        captured = b"".join(idle[-PRE_ROLL_FRAMES:] + spoken)
        self.turns.append(captured)
        digest = hashlib.sha256(captured).hexdigest()
        try:
            await until(
                lambda: any(t.audio_digest == digest and t.replies for t in self.server.user_turns),
                timeout=20,
                what=f"an answer to turn {len(self.turns)}",
            )
        except AssertionError:
            print("\n".join(self.timeline))
            print(
                *[
                    (
                        c.id,
                        c.session_id,
                        c.resumed,
                        c.opened_at,
                        c.closed_at,
                        c.close_code,
                        c.close_reason,
                        c.faults,
                    )
                    for c in self.server.connections
                ],
                sep="\n",
            )
            print(
                [
                    (t.index, t.source, t.audio_digest[:6], t.replies, t.interrupted)
                    for t in self.server.user_turns[-5:]
                ],
                digest[:6],
                self.rig.sup.stats(),
            )
            raise
        await until(
            lambda: (
                rig.phase == "live"
                and not (rig.sup.states() & {DeviceState.THINKING, DeviceState.LISTENING})
            ),
            timeout=20,
            what="the daemon back to idle",
        )
        return captured


def test_two_hour_conversation_across_every_limit_with_faults() -> None:
    async def body() -> None:
        limits = ServerLimits(
            time_scale=SCALE, connection_cap=360, goaway_before=50, session_cap_audio=900
        )
        # Production defaults, except two timeouts: at ×400 every wall millisecond the
        # shared event loop spends digesting a burst of audio counts as 0.4 s, so a 30 s
        # reply timeout (75 ms wall) or a 60 s pong timeout would fire on a busy loop.
        # The same holds for the maximum turn length: a 4 s turn paced in nominal time can
        # span minutes of the scaled clock on a busy loop (and the "silent" fault holds one
        # turn for 60 s on purpose); this test is not about endless turns.
        settings = SessionSettings(reply_timeout=120.0, max_turn_seconds=3600.0)
        async with LiveServer(limits=limits, voice="synthetic", api_keys={"k1"}) as server:
            async with Rig(
                server, settings, SCALE, seed=11, keepalive=Keepalive(30.0, 400.0)
            ) as rig:
                conv = Conversation(rig, server, seed=2026)
                await until(lambda: rig.phase == "live", what="first connection")
                timeline: list[str] = []
                rig.sup.subscribe(
                    lambda e: (
                        timeline.append(f"{rig.sup.now():8.1f} {e}")
                        if isinstance(e, (Notify, OpenConnection, CloseConnection))
                        else None
                    )
                )
                conv.timeline = timeline
                switches: list[tuple[float, float]] = []  # (closed at, ready at), nominal

                def on_effect(e: object) -> None:
                    t = rig.sup.now()
                    if isinstance(e, CloseConnection) and e.reason.startswith("switching"):
                        switches.append((t, -1.0))
                    elif (
                        isinstance(e, Notify)
                        and switches
                        and switches[-1][1] < 0
                        and e.message.startswith(("resumed session", "new session"))
                    ):
                        switches[-1] = (switches[-1][0], t)

                rig.sup.subscribe(on_effect)
                faults = {1200: "1006", 2400: "1011", 3600: "stall", 4800: "silent", 6000: "refuse"}
                outcomes: dict[str, str] = {}
                wall0 = asyncio.get_running_loop().time()
                while conv.now() < DURATION:
                    await conv.sleep(conv.rng.uniform(5, 80))
                    due = [t for t in faults if t <= conv.now()]
                    if due:
                        kind = faults.pop(due[0])
                        outcomes[kind] = await inject(kind, conv, rig, server)
                        continue
                    across = conv.rng.random() < 0.2
                    await conv.turn(conv.rng.uniform(0.3, 4.0), across_switch=across)
                wall = asyncio.get_running_loop().time() - wall0

                # -- 1007 at the end, the key revoked: the mid-session close itself is not
                # fatal (FIELD_REPORTS F10/F11: mid-session 1007s happen on healthy
                # sessions), but the fresh setup it leads to is refused, and that is.
                server.api_keys = frozenset({"another key"})
                server.faults.close_now(1007, "API key not valid. Please pass a valid API key.")
                await until(lambda: rig.phase == "failed", what="failed after 1007")
                n = len(server.connections)
                await conv.sleep(600)
                assert len(server.connections) == n, "retried a 1007"
                assert DeviceState.ERROR in rig.led.shown[-1]
                outcomes["1007"] = "failed"

                st = rig.sup.stats()
                sessions = server.sessions
                print(
                    f"\n2 h nominal in {wall:.1f} s wall: {len(conv.turns)} turns, "
                    f"{st.resumes} resumes, {st.rollovers} rollovers, {st.retries} retries, "
                    f"{len(sessions)} server sessions, {len(server.connections)} connections, "
                    f"{conv.held_across_switch} turns pressed into a switch, "
                    f"frames captured/sent/dropped {st.frames_captured}/{st.frames_sent}/"
                    f"{st.frames_dropped}; faults → {outcomes}"
                )

                gaps = sorted(b - a for a, b in switches if b >= 0)
                print(
                    f"planned switches: {len(gaps)}, close→ready median "
                    f"{gaps[len(gaps) // 2] / SCALE * 1000:.2f} ms wall, max "
                    f"{gaps[-1] / SCALE * 1000:.2f} ms wall (loopback; nominal "
                    f"{gaps[len(gaps) // 2]:.2f} / {gaps[-1]:.2f} s at ×{SCALE:g})"
                )
                assert st.resumes >= 10 and st.rollovers >= 7, st
                assert st.frames_dropped == 0
                assert outcomes == {
                    "1006": "resumed",
                    "1011": "resumed",
                    "stall": "recovered",
                    "silent": "resumed mid-turn",
                    "refuse": "fresh with context",
                    "1007": "failed",
                }

                # -- every turn answered exactly once, with exactly its captured audio.
                for i, captured in enumerate(conv.turns):
                    digest = hashlib.sha256(captured).hexdigest()
                    answered = [t for t in server.user_turns if t.audio_digest == digest]
                    assert sum(t.replies for t in answered) == 1, (
                        f"turn {i + 1} answered {sum(t.replies for t in answered)} times"
                    )
                assert sum(t.replies for t in server.user_turns) == len(conv.turns)

                # -- sessions without faults got exactly the captured audio, in order.
                by_digest = {hashlib.sha256(c).hexdigest(): c for c in conv.turns}
                clean = 0
                for s in sessions:
                    if any(c.faults for c in s.connections):
                        continue
                    got = b"".join(
                        by_digest[t.audio_digest]
                        for t in s.user_turns
                        if t.audio_digest in by_digest
                    )
                    assert s.audio_digest == hashlib.sha256(got).hexdigest(), s.id
                    clean += 1
                assert clean >= 5

                # -- after each rollover the new session starts with the conversation so far.
                for prev, s in zip(sessions, sessions[1:]):
                    last_model = [text for role, text in prev.history if role == "model"]
                    if not last_model:
                        continue
                    # Restored turns come before the session's first own turn. A push-to-talk
                    # turn has no text: the server's entry for it names its audio digest.
                    own = s.user_turns[0] if s.user_turns else None
                    mark = (
                        None
                        if own is None
                        else f"digest {own.audio_digest[:6]}]"
                        if own.audio_digest
                        else own.text
                    )
                    first_turn = next(
                        (
                            i
                            for i, (role, text) in enumerate(s.history)
                            if role == "user" and mark is not None and text.endswith(mark)
                        ),
                        len(s.history),
                    )
                    restored = " ".join(text for _, text in s.history[:first_turn])
                    assert last_model[-1] in restored, f"session {s.id} lacks the context"

    run(body, timeout=120)


async def inject(kind: str, conv: Conversation, rig: Rig, server: LiveServer) -> str:
    """Inject one fault; return how the daemon came out of it."""
    before = len(server.connections)
    sessions_before = len(server.sessions)

    async def back_live() -> None:
        await until(
            lambda: (
                len(server.connections) > before
                and rig.phase == "live"
                and server.connections[-1].setup_completed_at is not None
            ),
            timeout=30,
            what=f"recovery from {kind}",
        )

    if kind in ("refuse", "silent"):
        # A goAway close to the rollover point becomes the rollover (no resume).
        await until(
            lambda: (rig.sup.stats().next_rollover_in or 0) > 300,
            timeout=30,
            what="a young session",
        )
    if kind in ("1006", "1011", "refuse"):
        await conv.turn(1.0)  # so that the session has a handle to resume with
        before, sessions_before = len(server.connections), len(server.sessions)
    if kind in ("1006", "1011"):
        server.faults.close_now(1006 if kind == "1006" else 1011, "Internal error occurred.")
        await back_live()
        return "resumed" if server.connections[-1].resumed else "fresh"
    if kind == "stall":
        # The server stops reading and writing with the user's turn in flight: the reply
        # timer notices; the stalled socket is never closed server-side, so the resume is
        # refused (1011, still open) until the core goes fresh with the conversation.
        async def stall() -> None:
            server.faults.stall()

        await conv.turn(1.0, before_release=stall)
        assert "stall" in (rig.sup.stats().last_error or "") or rig.sup.stats().retries
        return "recovered"
    if kind == "silent":
        # goAway, then silence, while the user talks through the deadline: the timer
        # switches mid-turn and the whole turn is replayed on the new connection.
        await conv.turn(1.0)  # so that the session has a handle to resume with
        rig_turn = conv.turn(60.0)
        task = asyncio.ensure_future(rig_turn)
        await conv.sleep(2.0)
        server.faults.silent_after_goaway(now=True, time_left=30.0)
        await task
        resumed = [c for c in server.connections[before:] if c.resumed]
        return "resumed mid-turn" if resumed else "fresh mid-turn"
    if kind == "refuse":
        server.faults.refuse_next_resume()
        server.faults.go_away_now(time_left=30.0)
        await until(
            lambda: len(server.sessions) > sessions_before and rig.phase == "live",
            timeout=30,
            what="a fresh session after the refusal",
        )
        assert any("refuse_resume" in c.faults for c in server.connections[before:]), "\n".join(
            conv.timeline[-12:]
        )
        prev, s = server.sessions[-2], server.sessions[-1]
        last_model = [text for role, text in prev.history if role == "model"][-1]
        try:  # the restore is the first frame after setupComplete; let the server read it
            await until(lambda: any(last_model in text for _, text in s.history), timeout=5)
        except AssertionError:
            return "fresh without context"
        return "fresh with context"
    raise AssertionError(kind)
