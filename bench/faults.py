"""The fault matrix: break the daemon the ways the world does, record how it came out.

    python -m bench.faults [--markdown] [--only NAME ...]

Each fault is a coroutine running against a fresh :class:`bench.faultrig.FaultRig`
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

from bench.faultrig import SCALE, FaultRig, until
from daemon.events import DeviceLost, DeviceRestored, DeviceState, MicOverflow
from daemon.liveserver import ServerLimits

__all__ = ["FaultResult", "FAULTS", "run_fault", "run_all", "markdown"]

INTERNAL = "Internal error occurred."


@dataclass
class FaultResult:
    """How the daemon came out of one fault."""

    name: str
    fault: str
    expect: str            # "recover", "stop" (fatal) or "restart" (process-level)
    outcome: str = ""      # "recovered", "stopped cleanly", or what went wrong
    answered: int = 0      # replies to the turn hit by the fault (want exactly 1)
    frames_captured: int = 0
    frames_lost: int = 0
    led: str = ""          # what hw.led.Led shows at the end
    led_during: str = ""   # what it showed while the fault held (where that matters)
    retries: int = 0       # the core's reconnect count
    connections: int = 0   # connections opened after the fault
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

async def recover(r: FaultRig, res: FaultResult, inject: Callable[[], object], *,
                  warm: bool = True, timeout: float = 20.0) -> None:
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
    first = await r.turn()
    await r.answered(first)
    assert r.sup is not None
    n = len(r.server.connections)
    r.server.faults.close_now(code, reason)
    try:
        await until(lambda: r.phase == "failed", 10, "FAILED")
        await asyncio.sleep(60 / SCALE)   # a nominal minute (backoff starts at 0.5 s): no retry
        res.outcome = "stopped cleanly" if len(r.server.connections) == n else "retried"
    except TimeoutError as exc:
        res.outcome = f"did not stop: {exc}"
    res.led = r.led.shown.value
    res.retries = len(r.server.connections) - n
    res.connections = res.retries
    res.detail = r.sup.stats().last_error or ""


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
        await stop_cleanly(r, res, 1008, "models/x is not found for API version v1beta, or is "
                           "not supported for bidiGenerateContent.")


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
            for i in range(400):
                r.button_pin.drive_low() if i % 2 == 0 else r.button_pin.drive_high()
        t = threading.Thread(target=bounce)
        t.start()
        t.join()
        await asyncio.sleep(0.1)  # past the 20 ms lock-out: the final level wins
        try:
            await until(r.is_idle, 20, "IDLE after the storm")
            res.outcome = "recovered"
        except TimeoutError as exc:
            res.outcome = f"not recovered: {exc}"
        res.extra["activity_starts"] = r.sent('"activityStart"') - starts
        res.extra["activity_ends"] = r.sent('"activityEnd"') - ends
        res.extra["button_active"] = float(r.button.is_active)
        res.answered = int(res.extra["activity_starts"] == res.extra["activity_ends"])
        res.led = r.led.shown.value
        res.retries = r.sup.stats().retries


# ------------------------------------------------------------------------------ running

def run_fault(name: str) -> FaultResult:
    what, expect, scenario = FAULTS[name]
    res = FaultResult(name, what, expect)
    t0 = time.monotonic()

    async def main() -> None:
        async with asyncio.timeout(60):
            await scenario(res)
    asyncio.run(main())
    res.wall_s = round(time.monotonic() - t0, 2)
    return res


def run_all(names: list[str] | None = None) -> list[FaultResult]:
    return [run_fault(n) for n in (names or list(FAULTS))]


def markdown(results: list[FaultResult]) -> str:
    lines = ["| fault | expected | outcome | turn answered | frames lost / captured | LED after "
             "| retries | connections | notes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        notes = ", ".join(f"{k} {v:g}" for k, v in r.extra.items())
        if r.detail:
            label = "" if r.expect == "restart" else "last error: "
            notes = f"{label}{r.detail[:60]}" + (f"; {notes}" if notes else "")
        if r.led_during:
            notes = f"LED {r.led_during} while lost" + (f"; {notes}" if notes else "")
        lines.append(f"| {r.fault} | {r.expect} | {r.outcome} | "
                     f"{'—' if r.expect == 'stop' else r.answered} | "
                     f"{r.frames_lost} / {r.frames_captured} | {r.led} | {r.retries} | "
                     f"{r.connections} | {notes} |")
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
    from bench import procfaults  # noqa: F401  (registers sigterm_mid_turn, kill9_restart)
    # Tool and MQTT rows (issue 11): tool_hangs, tool_cancelled, tool_across_goaway,
    # broker_down_and_back.
    from bench import toolfaults  # noqa: F401
