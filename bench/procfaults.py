"""The fault matrix's process-level faults: ``voiced run`` stopped or killed mid-turn.

Registered into :data:`bench.faults.FAULTS` (imported at the end of bench/faults.py).
Both run the real daemon as a child process against a local Live server in this
process; after the fault the daemon is started again from the same state directory
and must resume the *same* server session and answer a new push-to-talk turn exactly
once with every frame it captured. The turn in flight when the process ends ends
with it: SIGTERM closes the connection 1000 (the server never answers half a turn),
kill -9 loses what was only in memory. "LED" for a child process is the top state of
its control socket's ``status`` (hw.led shows the same state).
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from pathlib import Path

from bench.faults import FaultResult, fault
from daemon.liveserver import LiveServer, ServerLimits
from testing.processrig import VoicedProcess, saved_handle

SCALE = 4.0


async def _until(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _stop_or_kill_mid_turn(res: FaultResult, sig: int) -> None:
    async with LiveServer(limits=ServerLimits(time_scale=SCALE), voice="synthetic") as server:
        if sig == signal.SIGTERM:
            # F12: a per-key cap of one session, with dead sockets holding their slot for an
            # hour: the restart gets in only if the stopped daemon closed its session.
            server.faults.session_cap(1, abandoned_timeout=3600)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            first = VoicedProcess(root, server.endpoint(), SCALE, "first")
            second: VoicedProcess | None = None
            try:
                await first.wait_noted("READY=1")
                await first.wait_status(lambda s: s["state"] == "idle")
                assert (await first.control("say", text="remember forty-two"))["ok"]
                await server.wait_turns(1)
                await _until(lambda: saved_handle(first.state_dir), 10, "a saved handle")
                session_id = server.connections[0].session_id
                assert (await first.control("ptt", action="start"))["ok"]
                await asyncio.sleep(0.3)
                t_fault = time.monotonic()
                first.signal(sig)
                rc = await first.wait_exit(20)
                res.extra["exit_code"] = rc
                res.extra["exit_s"] = round(time.monotonic() - t_fault, 3)
                if sig == signal.SIGTERM:
                    stopping = first.noted("STOPPING=1")
                    res.extra["stopping_noted"] = float(stopping is not None)
                await server.wait_closed(1)
                gone = server.connections[0]
                res.extra["close_code"] = int(gone.close_code or 0)
                res.detail = (
                    f"connection closed by {gone.closed_by}: {gone.close_code} "
                    f"{gone.close_reason}".strip()
                )

                second = VoicedProcess(root, server.endpoint(), SCALE, "second")
                ready = await second.wait_noted("READY=1")
                res.extra["restart_ready_s"] = round(ready - second.started_at, 3)
                conns = await server.wait_connections(2)
                res.extra["resumed_same_session"] = float(
                    conns[1].resumed and conns[1].session_id == session_id
                )
                await second.wait_status(lambda s: s["state"] == "idle")
                before = len(server.user_turns)
                assert (await second.control("ptt", action="start"))["ok"]
                await asyncio.sleep(0.5)
                assert (await second.control("ptt", action="stop"))["ok"]
                await server.wait_for(
                    lambda: len(server.user_turns) > before and server.user_turns[-1].replies, 20
                )
                st = await second.wait_status(lambda s: s["state"] == "idle")
                turn = server.user_turns[-1]
                res.answered = turn.replies
                res.frames_captured = st["frames_captured"]
                res.frames_lost = st["frames_captured"] - turn.audio_bytes // 640
                res.led = st["state"]
                res.retries = st["retries"]
                res.connections = len(server.connections) - 1
                if sig == signal.SIGTERM:
                    res.extra["refused_over_cap"] = sum(
                        1 for c in server.connections if "session_cap" in c.faults
                    )
                clean = rc == 0 if sig == signal.SIGTERM else rc == -signal.SIGKILL
                res.outcome = (
                    "restarted"
                    if clean and res.extra["resumed_same_session"]
                    else f"exit {rc}, resumed {res.extra['resumed_same_session']}"
                )
            finally:
                first.close()
                if second is not None:
                    second.signal(signal.SIGTERM)
                    await second.wait_exit(20)
                    second.close()


@fault(
    "sigterm_mid_turn",
    "SIGTERM to `voiced run` while the user talks; then restart",
    expect="restart",
)
async def sigterm_mid_turn(res: FaultResult) -> None:
    await _stop_or_kill_mid_turn(res, signal.SIGTERM)


@fault(
    "kill9_restart", "kill -9 of `voiced run` while the user talks; then restart", expect="restart"
)
async def kill9_restart(res: FaultResult) -> None:
    await _stop_or_kill_mid_turn(res, signal.SIGKILL)
