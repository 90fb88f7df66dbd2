"""The fault matrix: break the daemon the ways the world does, record how it came out.

    python -m bench.faults [--markdown] [--only NAME ...]

Each fault is a coroutine running against a fresh :class:`testing.faultrig.FaultRig`
and returning a :class:`FaultResult`; ``tests/proving/test_faults.py`` runs the same
scenarios and asserts on the results, and ``--markdown`` writes the table for the
README (``docs/proving.md``). A recoverable fault is injected in the middle of a
push-to-talk turn, so "0 frames lost" means: the server answered that turn exactly
once and the audio it got for it has the sha256 of what the mic captured (pre-roll
included). Fatal faults must stop cleanly: FAILED, LED ERROR, no retry.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Awaitable, Callable

from daemon.events import DeviceLost, DeviceRestored, DeviceState, MicOverflow
from daemon.liveserver import ServerLimits
from daemon.liveserver import protocol as lp
from daemon.vocabulary import NewConversation, RunTool, SessionSettings
from testing.faultrig import SCALE, FaultRig, until

__all__ = ["FaultResult", "FAULTS", "run_fault", "run_all", "markdown"]

INTERNAL = "Internal error occurred."


@dataclass
class FaultResult:
    """How the daemon came out of one fault."""

    name: str
    fault: str
    expect: str  # "recover", "stop" (fatal), "restart" (process-level) or
    # "wait" (quota: the QUOTA state and slow retries, no ERROR)
    outcome: str = ""  # "recovered", "stopped cleanly", or what went wrong
    answered: int = 0  # replies to the turn hit by the fault (want exactly 1)
    frames_captured: int = 0
    frames_lost: int = 0
    led: str = ""  # what hw.led.Led shows at the end
    led_during: str = ""  # what it showed while the fault held (where that matters)
    retries: int = 0  # the core's reconnect count
    connections: int = 0  # connections opened after the fault
    detail: str = ""
    wall_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


Scenario = Callable[[FaultResult], Awaitable[None]]
FAULTS: dict[str, tuple[str, str, Scenario]] = {}


def fault(name: str, what: str, expect: str = "recover") -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        FAULTS[name] = (what, expect, fn)
        return fn

    return register


# ------------------------------------------------------------------------------ helpers


async def recover(
    r: FaultRig,
    res: FaultResult,
    inject: Callable[[], object],
    *,
    warm: bool = True,
    timeout: float = 20.0,
) -> None:
    """One clean turn (so there is a handle), then a turn with ``inject`` mid-way."""
    if warm:
        first = await r.turn()
        await r.answered(first)
    assert r.sup is not None
    before_conn = len(r.server.connections)
    retries0 = r.sup.stats().retries
    audio = await r.turn(fault=inject)
    try:
        await r.answered(audio, timeout)
        res.outcome = "recovered"
    except TimeoutError as exc:
        res.outcome = f"not recovered: {exc}"
    res.answered = r.answers(audio)
    res.frames_captured = len(audio) // 640
    res.frames_lost = 0 if res.answered else res.frames_captured
    res.led = r.led.shown.value
    res.retries = r.sup.stats().retries - retries0
    res.connections = len(r.server.connections) - before_conn
    res.detail = r.sup.stats().last_error or ""


async def stop_cleanly(r: FaultRig, res: FaultResult, code: int, reason: str) -> None:
    """The key really revoked / the model really unknown: the connection closes with
    ``code`` ``reason`` mid-session and every later setup is refused with the same text.
    A mid-session 1007/1008 is recoverable (issue 10: a fresh session with the context),
    so the core tries one fresh session; its setup is refused (fatal at setup), and then
    it must stop: FAILED, LED error, no retry for a nominal minute."""
    first = await r.turn()
    await r.answered(first)
    assert r.sup is not None
    n = len(r.server.connections)
    r.server.faults.refuse_next_setup(code, reason, count=100)
    r.server.faults.close_now(code, reason)
    try:
        await until(lambda: r.phase == "failed", 10, "FAILED")
        failed_at = len(r.server.connections)
        await asyncio.sleep(60 / SCALE)  # a nominal minute (backoff starts at 0.5 s): no retry
        res.outcome = "stopped cleanly" if len(r.server.connections) == failed_at else "retried"
        # Setups refused before the stop (the one fresh session the core may try).
        res.extra["refused_setups"] = failed_at - n
    except TimeoutError as exc:
        res.outcome = f"did not stop: {exc}"
        failed_at = n
    res.led = r.led.shown.value
    res.retries = len(r.server.connections) - failed_at
    res.connections = res.retries
    res.detail = r.sup.stats().last_error or ""


async def next_press(r: FaultRig, res: FaultResult, timeout: float = 20.0) -> None:
    """After a field fault, a press must be answered (issue 10: "a press after any field
    fault is answered"); recorded as ``next_press_answered``."""
    audio = await r.turn()
    try:
        await r.answered(audio, timeout)
        res.extra["next_press_answered"] = 1
    except TimeoutError:
        res.extra["next_press_answered"] = 0
        res.outcome = "next press not answered"
    res.led = r.led.shown.value


def speaker_bytes(r: FaultRig) -> int:
    return r.speaker.reply_frames_played * 2


async def speaker_drained(r: FaultRig, timeout: float = 10.0) -> None:
    """Until the speaker has played nothing new for two nominal seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        before = speaker_bytes(r)
        await asyncio.sleep(2 / SCALE)
        if speaker_bytes(r) == before:
            return


async def idle_fault(
    r: FaultRig,
    res: FaultResult,
    inject: Callable[[], object],
    settle: Callable[[], object],
    *,
    timeout: float = 20.0,
    linger: float = 0.0,
) -> None:
    """A clean turn, then ``inject`` while idle, wait for ``settle()`` and *linger*
    nominal seconds more; what played meanwhile was unasked. Then a press."""
    first = await r.turn()
    await r.answered(first)
    assert r.sup is not None
    await speaker_drained(r)  # the first answer's last samples are not "unasked"
    before_conn, retries0 = len(r.server.connections), r.sup.stats().retries
    played0 = speaker_bytes(r)
    got = inject()
    if asyncio.iscoroutine(got):
        await got
    try:
        await until(settle, timeout, "the fault to play out")
        await asyncio.sleep(linger / SCALE)
        await until(r.is_idle, timeout, "IDLE after the fault")
        res.outcome = "recovered"
    except TimeoutError as exc:
        res.outcome = f"not recovered: {exc}"
    res.extra["played_bytes_unasked"] = speaker_bytes(r) - played0
    res.extra["tools_run_unasked"] = sum(1 for e in r.effects if isinstance(e, RunTool))
    res.retries = r.sup.stats().retries - retries0
    res.connections = len(r.server.connections) - before_conn
    res.detail = r.sup.stats().last_error or ""
    if res.outcome == "recovered":
        await next_press(r, res)
    res.answered = int(res.extra.get("next_press_answered", 0))
    res.led = r.led.shown.value


def reply_fault(kind: str, **params: object) -> Callable[[FaultRig], Callable[[], object]]:
    return lambda r: lambda: r.server.faults.misbehave_next_reply(kind, **params)


# ------------------------------------------------------------------------------ the matrix


@fault("close_1000", "server closes 1000 mid-turn (unexpected normal close)")
async def close_1000(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.close_now(1000, ""))


@fault("close_1006", "TCP dropped mid-turn, no close frame (1006)")
async def close_1006(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.close_now(1006, ""))


@fault("close_1011", "server closes 1011 Internal error mid-turn")
async def close_1011(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.close_now(1011, INTERNAL))


@fault("close_1007", "server closes 1007 API key not valid", expect="stop")
async def close_1007(res: FaultResult) -> None:
    async with FaultRig() as r:
        await stop_cleanly(r, res, 1007, "API key not valid. Please pass a valid API key.")


@fault("close_1008", "server closes 1008 model not found", expect="stop")
async def close_1008(res: FaultResult) -> None:
    async with FaultRig() as r:
        await stop_cleanly(
            r,
            res,
            1008,
            "models/x is not found for API version v1beta, or is "
            "not supported for bidiGenerateContent.",
        )


@fault("goaway_silence", "goAway (timeLeft 30 s), then the server goes silent, mid-turn")
async def goaway_silence(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.silent_after_goaway(now=True, time_left=30))


@fault("setup_never", "connection drops; the next setupComplete never comes")
async def setup_never(res: FaultResult) -> None:
    async with FaultRig() as r:

        def inject() -> None:
            r.server.faults.withhold_setup_complete()
            r.server.faults.close_now(1011, INTERNAL)

        await recover(r, res, inject)


@fault("handle_refused", "connection drops; the resume is refused (1008 session not found)")
async def handle_refused(res: FaultResult) -> None:
    async with FaultRig() as r:

        def inject() -> None:
            r.server.faults.refuse_next_resume()
            r.server.faults.close_now(1011, INTERNAL)

        await recover(r, res, inject)
        res.extra["sessions"] = len(r.server.sessions)


@fault("tcp_stall", "TCP path stalls mid-turn (a loopback proxy stops forwarding)")
async def tcp_stall(res: FaultResult) -> None:
    async with FaultRig(proxy=True) as r:
        assert r.proxy is not None
        await recover(r, res, r.proxy.stall, timeout=30)


@fault("malformed_frame", "server sends a frame that is not JSON, mid-turn")
async def malformed_frame(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, r.server.faults.send_malformed)
        assert r.sup is not None
        res.extra["bad_frames"] = r.sup.stats().bad_frames


@fault("unknown_frame", "server sends an unknown top-level message, mid-turn")
async def unknown_frame(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, r.server.faults.send_unknown_field)


@fault("oversized_frame", "server sends a valid 2 MiB frame (websockets' default limit is 1 MiB)")
async def oversized_frame(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.send_oversized(2 * 1024 * 1024))


@fault("huge_frame", "server sends a 17 MiB frame (over our 16 MiB cap: we close 1009)")
async def huge_frame(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.send_oversized(17 * 1024 * 1024))


@fault("mic_overflow_storm", "10 000 input overflows posted from another thread mid-turn")
async def mic_overflow_storm(res: FaultResult) -> None:
    async with FaultRig() as r:

        def storm() -> None:
            for i in range(1, 10_001):
                r.inbox.post(MicOverflow(i))

        def inject() -> None:
            t = threading.Thread(target=storm)
            t.start()
            t.join()

        await recover(r, res, inject)
        assert r.sup is not None
        res.extra["mic_overflows"] = r.sup.stats().mic_overflows


@fault("mic_vanishes", "the mic device vanishes mid-turn and comes back (DeviceLost/Restored)")
async def mic_vanishes(res: FaultResult) -> None:
    async with FaultRig() as r:

        async def inject() -> None:
            r.inbox.post(DeviceLost("mic", "sim", "device unplugged"))
            await until(lambda: r.led.shown is DeviceState.ERROR, 5, "LED error")
            res.led_during = r.led.shown.value
            r.inbox.post(DeviceRestored("mic", "sim"))

        await recover(r, res, inject)


@fault("speaker_underrun", "reply audio arrives slower than it plays (server at 0.3× realtime)")
async def speaker_underrun(res: FaultResult) -> None:
    async with FaultRig(limits=ServerLimits(time_scale=SCALE, reply_pace=0.3)) as r:
        await recover(r, res, lambda: None, warm=False)
        res.extra["underruns"] = r.speaker.underruns
        res.extra["reply_bytes_played"] = r.speaker.reply_frames_played * 2


@fault("button_bounce_storm", "the button pin toggles 400 times in a burst, then stays up")
async def button_bounce_storm(res: FaultResult) -> None:
    async with FaultRig() as r:
        assert r.sup is not None
        starts, ends = r.sent('"activityStart"'), r.sent('"activityEnd"')

        def bounce() -> None:
            # The burst is one instant of the Button's clock, and holds the Button's lock
            # so the lock-out's resync reads the pin after it: as a real burst, however
            # long a busy machine deschedules this thread (HoldableClock).
            with r.button_clock.held(), r.button._lock:
                for i in range(400):
                    r.button_pin.drive_low() if i % 2 == 0 else r.button_pin.drive_high()

        t = threading.Thread(target=bounce)
        t.start()
        t.join()
        try:
            # The lock-out ends, the final level (up) wins, the turn ends and is answered.
            await until(lambda: not r.button.is_active, 20, "the release after the storm")
            await until(
                lambda: r.is_idle() and r.sent('"activityEnd"') > ends, 20, "IDLE after the storm"
            )
            res.outcome = "recovered"
        except TimeoutError as exc:
            res.outcome = f"not recovered: {exc}"
        res.extra["activity_starts"] = r.sent('"activityStart"') - starts
        res.extra["activity_ends"] = r.sent('"activityEnd"') - ends
        res.extra["button_active"] = float(r.button.is_active)
        res.answered = int(res.extra["activity_starts"] == res.extra["activity_ends"])
        res.led = r.led.shown.value
        res.retries = r.sup.stats().retries


# ------------------------------------------------------------------------------ the field
# FIELD_REPORTS.md: what the real Live API does, as local-server fault modes with the real
# texts (daemon/liveserver/faults.py). Rows whose correct outcome needs the session-core
# rework of issue 10 are written with the correct expectation all the same.

DEADLINE = lp.DEADLINE_EXPIRED


@fault("f1_goaway_1_5s", 'F1: goAway timeLeft "1.5s" mid-turn, then 1011 Deadline expired')
async def f1_goaway_1_5s(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.go_away_now(1.5))


@fault(
    "f1_cancelled_1000", 'F1: goAway mid-turn, then 1000 "The operation was cancelled." (Vertex)'
)
async def f1_cancelled_1000(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.go_away_now(10, 1000, lp.CANCELLED))


@fault("f1_cap_no_goaway", "F1: 1011 Deadline expired mid-turn with no goAway before it")
async def f1_cap_no_goaway(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.close_now(1011, DEADLINE))


@fault(
    "f2_goaway_total_silence",
    "F2: goAway (timeLeft 30 s) mid-turn, then no messages and no pongs until 1011",
)
async def f2_goaway_total_silence(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.go_away_then_silence(30))


@fault(
    "f4_handle_expired", "F4: connection drops; every handle has expired (1008 session not found)"
)
async def f4_handle_expired(res: FaultResult) -> None:
    async with FaultRig() as r:

        def inject() -> None:
            r.server.faults.expire_all_handles()
            r.server.faults.close_now(1011, INTERNAL)

        await recover(r, res, inject)
        res.extra["sessions"] = len(r.server.sessions)


@fault(
    "f6_history_dropped",
    "F6: connection drops; the resume is accepted but the history silently dropped",
)
async def f6_history_dropped(res: FaultResult) -> None:
    async with FaultRig() as r:

        def inject() -> None:
            r.server.faults.forget_on_resume()
            r.server.faults.close_now(1011, INTERNAL)

        # A conversation worth forgetting: the core tells a collapse from the jitter of
        # small counts only above history_loss_min_tokens (500) prompt tokens, and one
        # exchange is ~150 (a 1.5 s question ~40, its answer ~110). After five, the
        # prompt is ~650; after the forgetful resume it is ~40: the collapse F6 describes.
        for _ in range(5):
            await r.answered(await r.turn())
        await recover(r, res, inject, warm=False)
        await next_press(r, res)
        # Detected (promptTokenCount collapsed) and restored: the session the daemon is
        # on knows the first turn's answer again.
        session = r.server.sessions[-1]
        res.extra["history_restored"] = int(
            any("Turn 1:" in text for role, text in session.history if role in ("model", "user"))
        )


@fault("f7_phantom_turn", "F7: an unasked model turn (and toolCall) 2.5 s after an idle resume")
async def f7_phantom_turn(res: FaultResult) -> None:
    async with FaultRig() as r:

        def inject() -> None:
            r.server.faults.phantom_turn_after_resume(2.5, tool_call="save_meeting_note")
            r.server.faults.close_now(1011, INTERNAL)

        # The phantom says ~3 s of audio: 8 nominal seconds after it began, it would have
        # been sent and played.
        await idle_fault(
            r, res, inject, lambda: any(s.phantom_turns for s in r.server.sessions), linger=8
        )


@fault(
    "f7_reanswer_restore",
    "F7: a fresh session after a refused resume; restored history "
    "sent with turnComplete true would be answered again",
)
async def f7_reanswer_restore(res: FaultResult) -> None:
    async with FaultRig() as r:

        def inject() -> None:
            r.server.faults.reanswer_history()
            r.server.faults.refuse_next_resume()
            r.server.faults.close_now(1011, INTERNAL)

        await recover(r, res, inject)
        res.extra["reanswered"] = sum(
            t.replies for t in r.server.user_turns if t.misbehaved == "reanswer_history"
        )


@fault(
    "f9_backend_unavailable",
    'F9: 1011 "The service is currently unavailable." mid-turn and on every connection for 10 s',
)
async def f9_backend_unavailable(res: FaultResult) -> None:
    async with FaultRig() as r:

        def inject() -> None:
            r.server.faults.backend_down(10)
            r.server.faults.close_now(1011, lp.UNAVAILABLE)

        await recover(r, res, inject, timeout=40)
        res.extra["refused"] = sum(1 for c in r.server.connections if "backend_down" in c.faults)


@fault(
    "f9_internal_mid_audio", 'F9: 1011 "Internal error occurred." in the middle of the reply audio'
)
async def f9_internal_mid_audio(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, reply_fault("close_mid_audio")(r))


@fault(
    "f10_not_implemented_1008",
    'F10: mid-session 1008 "Operation is not implemented, or supported, or enabled."',
)
async def f10_not_implemented_1008(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.close_now(1008, lp.NOT_IMPLEMENTED))


@fault("f11_content_type_1007", "F11: mid-session 1007 CONTENT_TYPE_AUDIO on a healthy session")
async def f11_content_type_1007(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.close_now(1007, lp.CONTENT_TYPE_AUDIO))


@fault(
    "setup_key_expired_1007",
    'F11: 1007 "API key expired. Please renew the API key." at setup',
    expect="stop",
)
async def setup_key_expired_1007(res: FaultResult) -> None:
    async with FaultRig(
        arm=lambda s: s.faults.refuse_next_setup(1007, lp.KEY_EXPIRED, 10), wait_idle=False
    ) as r:
        assert r.sup is not None
        try:
            await until(lambda: r.phase == "failed", 10, "FAILED")
            await asyncio.sleep(60 / SCALE)
            res.outcome = "stopped cleanly" if len(r.server.connections) == 1 else "retried"
        except TimeoutError as exc:
            res.outcome = f"did not stop: {exc}"
        res.led = r.led.shown.value
        res.retries = res.connections = len(r.server.connections) - 1
        res.detail = r.sup.stats().last_error or ""


@fault(
    "f12_session_cap",
    "F12: TCP drops mid-turn; the dead socket holds the only session slot "
    "(cap 1) for 60 s: 1011 RESOURCE_EXHAUSTED until then",
)
async def f12_session_cap(res: FaultResult) -> None:
    async with FaultRig(arm=lambda s: s.faults.session_cap(1, abandoned_timeout=60)) as r:

        async def inject() -> None:
            r.server.faults.close_now(1006, "")
            try:
                await until(lambda: r.led.shown is DeviceState.QUOTA, 5, "LED quota")
            except TimeoutError:
                pass
            res.led_during = r.led.shown.value

        await recover(r, res, inject, timeout=40)
        res.extra["refused"] = sum(1 for c in r.server.connections if "session_cap" in c.faults)


@fault(
    "f12_switches_under_cap",
    "F12: a goAway switch, a refused resume (fresh session), a "
    "rollover and a new conversation under a 1-session cap: every old socket closed (1000) "
    "before the next opens",
)
async def f12_switches_under_cap(res: FaultResult) -> None:
    # Sessions roll over after 180 nominal s (cap 300 s, looking 120 s early): after the
    # goAway switch and the refused resume, which take less than that.
    settings = SessionSettings(session_cap_audio=300.0, rollover_window=120.0)
    async with FaultRig(
        arm=lambda s: s.faults.session_cap(1, abandoned_timeout=600), settings=settings
    ) as r:
        await recover(r, res, lambda: r.server.faults.go_away_now(5))

        def refused_resume() -> None:
            r.server.faults.refuse_next_resume()
            r.server.faults.go_away_now(5)

        audio = await r.turn(fault=refused_resume)
        await r.answered(audio)
        assert r.sup is not None
        rollovers0 = r.sup.stats().rollovers  # the fresh session counts as one
        try:
            await until(
                lambda: r.sup is not None and r.sup.stats().rollovers > rollovers0, 20, "a rollover"
            )
            audio = await r.turn()
            await r.answered(audio)
        except TimeoutError as exc:
            res.outcome = f"no rollover: {exc}"
        res.extra["rollovers"] = r.sup.stats().rollovers - rollovers0
        sessions = len(r.server.sessions)
        r.inbox.post(NewConversation())  # what the long-hold action does
        try:
            await until(
                lambda: len(r.server.sessions) > sessions and r.is_idle(),
                20,
                "the new conversation",
            )
            audio = await r.turn()
            await r.answered(audio)
        except TimeoutError as exc:
            res.outcome = f"no new conversation: {exc}"
        closed = [
            c
            for c in r.server.connections
            if c.closed_at is not None and c.setup_completed_at is not None
        ]
        res.extra["refused_over_cap"] = sum(
            1 for c in r.server.connections if "session_cap" in c.faults
        )
        res.extra["closed_by_us_1000"] = sum(
            1 for c in closed if c.closed_by == "client" and c.close_code == 1000
        )
        res.extra["closed_other"] = len(closed) - res.extra["closed_by_us_1000"]
        res.extra["sessions"] = len(r.server.sessions)
    # The daemon stopping (as on SIGTERM) closes its session explicitly too.
    last = r.server.connections[-1]
    res.extra["exit_close_1000"] = int(last.closed_by == "client" and last.close_code == 1000)


@fault(
    "f12_daily_budget",
    "F12: the daily budget runs out mid-turn: every setup gets 1011 RESOURCE_EXHAUSTED",
    expect="wait",
)
async def f12_daily_budget(res: FaultResult) -> None:
    async with FaultRig(arm=lambda s: s.faults.daily_budget(1)) as r:
        first = await r.turn()
        await r.answered(first)
        assert r.sup is not None
        n = len(r.server.connections)
        r.server.faults.close_now(1011, INTERNAL)
        try:
            await until(lambda: r.led.shown is DeviceState.QUOTA, 20, "LED quota")
            await asyncio.sleep(300 / SCALE)  # five nominal minutes
            # quota_backoff is five minutes too: the LED may be showing that try right
            # now ("connecting"); still exhausted, the try is refused and it is back to
            # quota. Waiting for that state, not sampling the instant, tells the two apart.
            try:
                await until(lambda: r.led.shown is DeviceState.QUOTA, 20, "LED quota again")
                res.outcome = "waiting (quota)"
            except TimeoutError:
                res.outcome = "left quota"
        except TimeoutError as exc:
            res.outcome = f"no quota state: {exc}"
        res.led = r.led.shown.value
        res.retries = res.connections = len(r.server.connections) - n
        res.detail = r.sup.stats().last_error or ""


async def quiet_then_idle(r: FaultRig, res: FaultResult, seconds: float) -> None:
    """Stay idle *seconds* nominal (several keepalive rounds): nothing may reconnect."""
    assert r.sup is not None
    retries0, conns0 = r.sup.stats().retries, len(r.server.connections)
    await asyncio.sleep(seconds / SCALE)
    res.extra["idle_reconnects"] = (
        r.sup.stats().retries - retries0 + len(r.server.connections) - conns0
    )
    res.extra["pings"] = r.server.connections[-1].pings_received


@fault("f13_pongs_late", "F13: every pong 25 s late (idle for 150 s afterwards)")
async def f13_pongs_late(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.pongs(25))
        await quiet_then_idle(r, res, 150)


@fault(
    "f13_pongs_never",
    "F13: pings never answered, the session otherwise healthy (idle for 150 s afterwards)",
)
async def f13_pongs_never(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, lambda: r.server.faults.pongs(None))
        await quiet_then_idle(r, res, 150)


@fault("f14_stall_after_activity_end", "F14: inputTranscription after activityEnd, then nothing")
async def f14_stall_after_activity_end(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, reply_fault("stall_after_activity_end")(r), timeout=40)


@fault("f14_response_rejected", "F14: turnComplete RESPONSE_REJECTED with no audio: retried once")
async def f14_response_rejected(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, reply_fault("reject_response")(r))


@fault(
    "f15_premature_turn_complete",
    "F15: two audio chunks, then turnComplete with no generationComplete",
)
async def f15_premature_turn_complete(res: FaultResult) -> None:
    async with FaultRig() as r:
        await idle_turn_fault(r, res, reply_fault("premature_turn_complete")(r))


@fault("f16_interrupted_with_audio", "F16: interrupted:true in the same frame as reply audio")
async def f16_interrupted_with_audio(res: FaultResult) -> None:
    async with FaultRig() as r:
        await idle_turn_fault(r, res, reply_fault("interrupted_with_audio")(r))


async def idle_turn_fault(r: FaultRig, res: FaultResult, inject: Callable[[], object]) -> None:
    """A turn whose reply misbehaves (cut short by the server: nothing to resend); the
    device must come back to IDLE on its own and answer the next press."""
    first = await r.turn()
    await r.answered(first)
    assert r.sup is not None
    before_conn, retries0 = len(r.server.connections), r.sup.stats().retries
    audio = await r.turn(fault=inject)
    try:
        await until(
            lambda: (t := r.server_turn(audio)) is not None and t.misbehaved,
            20,
            "the misbehaving reply",
        )
        await until(r.is_idle, 20, "IDLE after it")
        res.outcome = "recovered"
        await next_press(r, res)
    except TimeoutError as exc:
        res.outcome = f"not recovered: {exc}"
    res.answered = int(res.extra.get("next_press_answered", 0))
    res.frames_captured = len(audio) // 640
    res.frames_lost = 0 if r.server_turn(audio) is not None else res.frames_captured
    res.retries = r.sup.stats().retries - retries0
    res.connections = len(r.server.connections) - before_conn
    res.detail = r.sup.stats().last_error or ""


@fault(
    "f16_spurious_interrupt",
    "F16: a spurious interrupted + turnComplete right after activityStart, before the real reply",
)
async def f16_spurious_interrupt(res: FaultResult) -> None:
    async with FaultRig() as r:
        first = await r.turn()
        await r.answered(first)
        r.server.faults.spurious_interrupt()
        played0 = speaker_bytes(r)
        await recover(r, res, lambda: None, warm=False)
        res.extra["reply_bytes_played"] = speaker_bytes(r) - played0


@fault("f17_burst", "F17: 10 s of reply audio in 0.3 s, turnComplete ~10 s later")
async def f17_burst(res: FaultResult) -> None:
    async with FaultRig() as r:
        played0 = speaker_bytes(r)
        await recover(r, res, reply_fault("burst", seconds=10, within=0.3)(r))
        res.extra["reply_bytes_played"] = speaker_bytes(r) - played0


@fault("f17_trickle", "F17: reply audio at 0.7x realtime with 1.5 s gaps")
async def f17_trickle(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, reply_fault("trickle", pace=0.7, gap=1.5, every=1.0)(r))
        res.extra["underruns"] = r.speaker.underruns


@fault(
    "f18_undeclared_tool_call",
    "F18: a toolCall of an undeclared function, then nothing until it is answered",
)
async def f18_undeclared_tool_call(res: FaultResult) -> None:
    async with FaultRig() as r:
        await recover(r, res, reply_fault("undeclared_tool_call")(r))
        res.extra["tool_responses"] = r.sent('"toolResponse"')


@fault("f25_close_1000_idle", "F25: close 1000 with an empty reason while idle")
async def f25_close_1000_idle(res: FaultResult) -> None:
    async with FaultRig() as r:
        n = len(r.server.connections)
        await idle_fault(
            r,
            res,
            lambda: r.server.faults.close_now(1000, ""),
            lambda: len([c for c in r.server.connections if c.setup_completed_at is not None]) > n,
        )


# ------------------------------------------------------------------------------ running


def run_fault(
    name: str, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
) -> FaultResult:
    """Run one row. ``loop_factory`` picks the event loop (a test on a busy machine passes
    tests.timing.ProgressLoop, whose clock does not run while the loop waits for a CPU)."""
    what, expect, scenario = FAULTS[name]
    res = FaultResult(name, what, expect)
    t0 = time.monotonic()

    async def main() -> None:
        async with asyncio.timeout(60):
            await scenario(res)

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    res.wall_s = round(time.monotonic() - t0, 2)
    return res


def run_all(names: list[str] | None = None) -> list[FaultResult]:
    return [run_fault(n) for n in (names or list(FAULTS))]


def markdown(results: list[FaultResult]) -> str:
    lines = [
        "| fault | expected | outcome | turn answered | frames lost / captured | LED after "
        "| retries | connections | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        notes = ", ".join(f"{k} {v:g}" for k, v in r.extra.items())
        if r.detail:
            label = "" if r.expect == "restart" else "last error: "
            notes = f"{label}{r.detail[:60]}" + (f"; {notes}" if notes else "")
        if r.led_during:
            notes = f"LED {r.led_during} during the fault" + (f"; {notes}" if notes else "")
        lines.append(
            f"| {r.fault} | {r.expect} | {r.outcome} | "
            f"{'—' if r.expect == 'stop' else r.answered} | "
            f"{r.frames_lost} / {r.frames_captured} | {r.led} | {r.retries} | "
            f"{r.connections} | {notes} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the markdown table only")
    parser.add_argument("--only", nargs="*", choices=sorted(FAULTS), help="run just these")
    args = parser.parse_args(argv)
    results = run_all(args.only)
    if args.markdown:
        print(markdown(results))
        return 0
    for r in results:
        print(asdict(r))
    return 0


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy: bench.procfaults registers its
    # faults into bench.faults.FAULTS.
    from bench.faults import main as module_main

    raise SystemExit(module_main())
else:
    # Tool and MQTT rows (issue 11): tool_hangs, tool_cancelled, tool_across_goaway,
    # broker_down_and_back.
    from bench import (
        procfaults,  # noqa: F401  (registers sigterm_mid_turn, kill9_restart)
        toolfaults,  # noqa: F401
    )
