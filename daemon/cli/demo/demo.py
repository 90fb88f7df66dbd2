"""
``voiced demo``: the whole device on a laptop — no key, no network, no hardware.

It starts the local Live server in-process at a time scale (default 20: the
10-minute connection cap takes 30 s, the 15-minute session cap 45 s), runs the real
daemon core (Session + Supervisor + websockets adapter) on simulated hardware (the
real Button and Led code on gpiozero mock pins, a sim mic and speaker paced at the
same time scale), and drives it through a scripted conversation (daemon/cli/demo/script.py):
push-to-talk turns with synthesized speech, a typed question, a barge-in, a turn
spanning the server's goAway, one pressed during the resume, one during the
15-minute rollover. It prints a timeline (daemon/cli/demo/trace.py), writes what the
speaker played to a WAV file, and checks against the server's own inspection that
every captured audio frame arrived, byte for byte.

With ``--endpoint URL`` the same script runs against any Live server (plain ws://
only for loopback); then delivery cannot be inspected and only replies are checked.

Exit status: 0 when every turn got a reply, no frame was lost and nothing failed;
1 otherwise; 2 for bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
import tempfile
import time
import wave
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from daemon.errors import ConfigError, VoicedError

__all__ = [
    "DEFAULT_TIME_SCALE",
    "DemoError",
    "external_target",
    "passed",
    "run_demo",
    "add_arguments",
    "main",
    "measure_cpu",
    "choose_time_scale",
    "slowness_advice",
    "REFERENCE_CPU_MS",
]

log = logging.getLogger(__name__)

DEFAULT_TIME_SCALE = 20.0
"""goAway at ~25 s, the resume right after, the 15-minute rollover at ~40 s of wall time.
The most the demo runs at; a slower machine gets less (:func:`choose_time_scale`)."""

SCALE_LADDER = (20.0, 10.0, 5.0, 2.0, 1.0)
"""The time scales the demo picks from, fastest first."""

REFERENCE_CPU_MS = 3.0
""":func:`measure_cpu` on the machine the demo was tuned on (x86-64 Debian 12 VM, 2
shared cores, 2026-11; 2.6–4.2 ms): there the whole demo at scale 20 uses about a
third of one core (docs/proving.md: ~6 ms CPU per audio second for the daemon's side,
as much again for the embedded server and the simulated hardware)."""

LAG_SLOW_S = 0.25
"""Event-loop lag (wall seconds) that means the machine did not keep up."""

LAG_SLOW_NOMINAL_S = 5.0
"""The same in nominal seconds: at a high time scale a quarter second of wall time is
half a minute of the device's life (37 s at scale 150), far more than any guard
allows, so the wall threshold shrinks with the scale (:func:`slow_lag_s`)."""


def slow_lag_s(scale: float) -> float:
    """Loop lag (wall seconds) that counts as falling behind at ``scale``."""
    return min(LAG_SLOW_S, LAG_SLOW_NOMINAL_S / max(scale, 1e-9))


GOAWAY_BEFORE = 100.0
"""The embedded server's goAway comes this long (nominal) before its 10-minute cap.
Real servers say 50–60 s; the daemon starts its own age-based switch 90 s before the
cap when idle (SessionSettings.connection_switch_window), so a realistic goAway would
never be seen by an idle demo. 100 s lets the demo show the goAway path."""


class DemoError(VoicedError, RuntimeError):
    """The demo cannot run as asked (an unwritable output directory)."""


def external_target(value: str, conf: Any) -> Any:
    """``--endpoint VALUE`` resolved by the daemon's own rules (daemon/app/endpoints.py: plain
    ws:// only to loopback, the Gemini path added to a bare URL, "local", "gemini", …),
    with the key from the configuration's key sources.

    Raises:
        ConfigError: the endpoint cannot work (names it and says why).
    """
    from daemon.app import config as cfg
    from daemon.app.endpoints import resolve

    key = conf.api_key or cfg.resolve_api_key(conf.live, os.environ)
    return resolve(replace(conf.live, endpoint=value), key)


# ---------------------------------------------------------------------------------------------


async def run_demo(args: argparse.Namespace, out: Callable[[str], None]) -> dict[str, Any]:
    """Run the demo; return the totals (:func:`passed` says whether they pass)."""
    from daemon.cli.demo.script import Script
    from daemon.cli.demo.trace import Tap, Trace, fmt_nominal
    from daemon.health import floor_guards
    from daemon.runtime.supervisor import Inbox, Supervisor
    from daemon.session import Session

    scale = args.time_scale
    conf = _load_config(args.config)
    target = external_target(args.endpoint, conf) if args.endpoint else None
    outdir = _outdir(args.out)
    wav_path = outdir / "replies.wav"
    voice, speech_kind = _utterances(outdir, args.synthetic_speech)
    inbox = Inbox()
    tap = Tap(inbox.post)  # sees every mic frame and button edge, in inbox order
    hardware = _sim_hardware(conf, tap.post, scale, wav_path)
    server: Any = None
    t_start = time.monotonic()
    try:
        if target is not None and not target.local:
            endpoint, api, model, where = (
                target.endpoint,
                target.api,
                target.model,
                target.describe(),
            )
        else:
            server = await _embedded_server(scale)
            endpoint, api, model = _endpoint(server.endpoint(), {}), "gemini", conf.live.model
            where = f"embedded local Live server at {server.url} (voice: {server.voice.kind})"
        # The guards are nominal seconds, and at scale S shrink S-fold in wall time: keep
        # wall-clock floors so a slow CPU is not mistaken for a stalled server (issue 14).
        settings = floor_guards(conf.session, scale)
        sup = Supervisor(
            Session(settings, _setup(conf, model), api, 0.0),
            endpoint,
            inbox=inbox,
            mic=hardware.mic,
            speaker=hardware.speaker,
            button=hardware.button,
            led=hardware.led,
            time_scale=scale,
        )
        trace = Trace(sup, out)
        sup.subscribe(trace)
        _header(
            out,
            scale,
            where,
            speech_kind,
            wav_path,
            embedded=server is not None,
            chosen=getattr(args, "scale_note", None),
        )
        script = Script(sup, hardware, trace, voice, scale, lambda: _goaway_at(server, sup))
        budget = (conf.session.session_cap_audio + 400) / scale + 60
        lag = LoopLag(slow_s=slow_lag_s(scale))
        try:
            async with asyncio.timeout(budget):
                await sup.run(script.run(), lag.watch())
        except TimeoutError:
            trace.error(f"the demo did not finish within {budget:.0f} s of wall time")
        totals = _totals(sup, trace, tap, server, hardware.mic.settings.frame_bytes)
        totals.update(
            speech=speech_kind,
            reply_wav=str(wav_path),
            reply_wav_seconds=_wav_seconds(wav_path),
            time_scale=scale,
            wall_seconds=round(time.monotonic() - t_start, 1),
            nominal_seconds=round(sup.now(), 1),
            loop_lag_max_s=round(lag.worst, 3),
            loop_lag_late=lag.late,
            cpu_probe_ms=getattr(args, "cpu_probe_ms", None),
            endpoint="embedded" if server is not None else where,
        )
        _summary(out, trace, totals, fmt_nominal)
        if server is not None:
            # Tools and Home Assistant (issue 11): daemon/cli/demo/tools.py, on the same server.
            from daemon.cli.demo.tools import run_tools_segment

            out("")
            extra = await run_tools_segment(server, model, scale, trace.line)
            totals["errors"] += len(extra.pop("errors"))
            totals.update(extra)
    finally:
        hardware.close()
        if server is not None:
            await server.stop()
    return totals


class LoopLag:
    """How far the event loop falls behind (wall seconds): a loop that wakes late
    everywhere is a machine that cannot keep up with the time scale."""

    def __init__(self, period: float = 0.05, slow_s: float = LAG_SLOW_S) -> None:
        self.period = period
        self.slow_s = slow_s
        self.worst = 0.0
        self.late = 0
        """Wake-ups later than ``slow_s``."""

    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.period
            await asyncio.sleep(self.period)
            lag = loop.time() - asked
            self.worst = max(self.worst, lag)
            self.late += lag > self.slow_s


def measure_cpu(nominal_seconds: int = 4, rounds: int = 3) -> float:
    """CPU milliseconds this machine needs for one nominal second of the demo's
    per-frame work (50 mic frames and 1 s of reply audio through base64, JSON, sha256
    and the resampler), best of ``rounds``. Process CPU time, not wall: other busy
    processes do not make the machine look slower than it is (the guard floors cover
    contention)."""
    import base64
    import hashlib

    import numpy as np

    from hw.resample import Resampler

    frame = bytes(range(256)) * 2 + bytes(128)  # 640 bytes: one 20 ms mic frame
    reply = (np.sin(np.arange(4800) / 7.0) * 8000).astype("<i2").tobytes()  # 200 ms
    best = math.inf
    for _ in range(rounds):
        resampler, digest = Resampler(24000, 48000), hashlib.sha256()
        t0 = time.process_time()
        for _ in range(nominal_seconds):
            for _ in range(50):
                text = json.dumps(
                    {
                        "realtimeInput": {
                            "audio": {
                                "data": base64.b64encode(frame).decode(),
                                "mimeType": "audio/pcm;rate=16000",
                            }
                        }
                    }
                )
                digest.update(base64.b64decode(json.loads(text)["realtimeInput"]["audio"]["data"]))
            for _ in range(5):
                text = json.dumps(
                    {
                        "serverContent": {
                            "modelTurn": {
                                "parts": [
                                    {
                                        "inlineData": {
                                            "data": base64.b64encode(reply).decode(),
                                            "mimeType": "audio/pcm;rate=24000",
                                        }
                                    }
                                ]
                            }
                        }
                    }
                )
                part = json.loads(text)["serverContent"]["modelTurn"]["parts"][0]
                resampler.process(base64.b64decode(part["inlineData"]["data"]))
        best = min(best, (time.process_time() - t0) / nominal_seconds * 1000)
    return best


def choose_time_scale(cpu_ms: float) -> float:
    """The fastest scale of :data:`SCALE_LADDER` this machine keeps with room to spare:
    at most 40 / (cpu_ms / REFERENCE_CPU_MS), i.e. about 2/3 of one core at most where
    the reference machine needs a third at 20 (emulated arm64, ~10–30× slower, gets 2–5)."""
    slower = max(cpu_ms, 1e-9) / REFERENCE_CPU_MS
    limit = 40.0 / slower
    return next((s for s in SCALE_LADDER if s <= limit), SCALE_LADDER[-1])


def slowness_advice(totals: dict[str, Any], scale: float) -> str | None:
    """One line saying the machine could not keep up, and what to do, or None."""
    worst, late = totals.get("loop_lag_max_s") or 0.0, totals.get("loop_lag_late") or 0
    slow = slow_lag_s(scale)
    if worst < slow and late == 0:
        return None
    lower = next((s for s in SCALE_LADDER if s <= scale / 4), None)
    what = (
        f"try --time-scale {lower:g}"
        if lower is not None and lower < scale
        else "close other programs, or use a faster machine"
    )
    return (
        f"this machine could not keep up with time scale {scale:g} (its event loop "
        f"fell behind by up to {worst:.2f} s of wall time, {worst * scale:.0f} s "
        f"real-time; {late} times over {slow:.2g} s): {what}"
    )


def _load_config(path: str | None) -> Any:
    """The file given with --config, else pure defaults: a demo on a configured Pi should
    not pick up /etc/voiced/voiced.toml's margins unless asked to."""
    from daemon.app import config as cfg

    return cfg.load(path, required=True) if path else cfg.parse({}, {})


def _utterances(outdir: Path, synthetic: bool) -> tuple[dict[str, Any], str]:
    """Every line of the script as audio, and "espeak-ng" or "synthetic"."""
    from daemon.cli.demo.script import VOICE_LINES, Utterance
    from daemon.cli.demo.trace import speech

    voice: dict[str, Any] = {}
    kinds: set[str] = set()
    for key, text in VOICE_LINES.items():
        pcm, rate, kind = speech(text, outdir, use_espeak=not synthetic)
        voice[key] = Utterance(text, pcm, rate)
        kinds.add(kind)
    return voice, "espeak-ng" if kinds == {"espeak-ng"} else "synthetic"


def _sim_hardware(conf: Any, post: Callable[[Any], None], scale: float, wav: Path) -> Any:
    """hw/sim.py at the time scale. The speaker's drain wait is wall time (hw/playback.py:
    the core does not call ``end_of_reply`` yet), so it is scaled down too."""
    from hw.sim import make_sim_hardware

    spk = conf.speaker
    spk = replace(spk, drain_ms=max(spk.frame_ms, math.ceil(spk.drain_ms / scale)))
    return make_sim_hardware(
        post,
        mic=conf.mic,
        speaker=spk,
        button=conf.button,
        led=conf.led,
        earcons=conf.earcons,
        speaker_path=wav,
        speed=scale,
    )


def _setup(conf: Any, model: str) -> Any:
    from daemon import wire

    live = conf.live
    return wire.SetupConfig(
        model=model,
        voice=live.voice or None,
        language=live.language or None,
        system_instruction=live.system_instruction or None,
    )


def _endpoint(url: str, headers: dict[str, str]) -> Any:
    from daemon.runtime.connection import Endpoint

    return Endpoint(url, headers)


async def _embedded_server(scale: float) -> Any:
    from daemon.liveserver import LiveServer, ServerLimits

    server = LiveServer(
        limits=ServerLimits(time_scale=scale, goaway_before=GOAWAY_BEFORE), voice="auto"
    )
    await server.start()
    return server


def _goaway_at(server: Any, sup: Any) -> float | None:
    """When the embedded server will send its first goAway, on the supervisor's clock."""
    if server is None or not server.connections:
        return None
    limits = server.limits
    offset = server.now() - sup.now()  # both nominal; the server started a little earlier
    return server.connections[0].opened_at + limits.connection_cap - limits.goaway_before - offset


def _header(
    out: Callable[[str], None],
    scale: float,
    where: str,
    speech_kind: str,
    wav: Path,
    embedded: bool,
    chosen: str | None = None,
) -> None:
    out(f"voiced demo — time scale {scale:g} (1 wall second = {scale:g} real-time seconds)")
    if chosen:
        out(f"  scale:   {chosen}")
    out(f"  server:  {where.split('?')[0]}")
    out(
        f"  speech:  {speech_kind}"
        + (
            " (espeak-ng WAV → 16 kHz)"
            if speech_kind == "espeak-ng"
            else " (a speech-shaped synthetic signal; install espeak-ng for real speech)"
        )
    )
    out(f"  replies: {wav}")
    if embedded:
        out(
            f"  note:    the server sends goAway {GOAWAY_BEFORE:g} s before its 10-minute cap "
            "(real: 50–60 s), so that the daemon's own switch"
        )
        out("           at 8:30 (idle, connection_switch_window) does not come first")
    out(f"{'wall':>7}  {'real-time':>10}  {'what':<8} detail")


def _outdir(path: str | None) -> Path:
    try:
        if path is None:
            return Path(tempfile.mkdtemp(prefix="voiced-demo-"))
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        return p
    except OSError as exc:
        raise DemoError(f"--out {path!r}: cannot create the directory: {exc.strerror}") from None


def _wav_seconds(path: Path) -> float:
    try:
        with wave.open(str(path), "rb") as w:
            return round(w.getnframes() / w.getframerate(), 2)
    except (OSError, wave.Error, EOFError):
        return 0.0


def _totals(sup: Any, trace: Any, tap: Any, server: Any, frame_bytes: int) -> dict[str, Any]:
    st = sup.stats()
    voice_turns = [t for t in trace.turns if t.kind == "voice"]
    captured = tap.turns(sup.session.settings.pre_roll_ms)
    import hashlib

    tap_frames = 0
    for turn, audio in zip(voice_turns, captured):
        turn.frames = len(audio) // frame_bytes
        turn.digest = hashlib.sha256(audio).hexdigest()
        tap_frames += turn.frames
    if len(captured) != len(voice_turns):
        trace.error(
            f"{len(voice_turns)} push-to-talk turns scripted, {len(captured)} seen by the mic tap"
        )
    if tap_frames != st.frames_captured:
        trace.error(
            f"the core counted {st.frames_captured} captured frames, the mic tap {tap_frames}"
        )
    delivered: int | None = None
    lost: int | None = None
    if server is not None:
        received = {
            t.audio_digest
            for t in server.user_turns
            if t.source == "activity" and not t.rolled_back
        }
        delivered = 0
        for turn in voice_turns:
            turn.delivered = turn.digest in received
            delivered += turn.frames if turn.delivered else 0
        lost = tap_frames - delivered
        unanswered = [
            t.index
            for t in server.user_turns
            if not t.rolled_back and t.replies + t.interrupted == 0
        ]
        if unanswered:
            trace.error(f"the server has user turns with no reply: {unanswered}")
    elif st.frames_dropped:
        lost = st.frames_dropped
    return {
        "turns": len(trace.turns),
        "replies": sum(1 for t in trace.turns if t.answered),
        "goaways": trace.goaways,
        "resumes": st.resumes,
        "rollovers": st.rollovers,
        "retries": st.retries,
        "frames_captured": st.frames_captured,
        "frames_delivered": delivered,
        "frames_lost": lost,
        "digests_match": None if server is None else all(t.delivered for t in voice_turns),
        "led_states_seen": trace.led_states_seen,
        "errors": len(trace.errors),
    }


def _summary(
    out: Callable[[str], None],
    trace: Any,
    totals: dict[str, Any],
    fmt_nominal: Callable[[float], str],
) -> None:
    out("")
    out("turn  kind   asked at    frames  delivered  answer")
    for t in trace.turns:
        asked = fmt_nominal(t.asked_at) if t.asked_at is not None else "-"
        dl = {True: "exact", False: "NO", None: "-"}[t.delivered]
        spans = f" [{', '.join(t.spans)}]" if t.spans else ""
        answer = (t.reply[:48] + "…" if len(t.reply) > 49 else t.reply) if t.answered else "NONE"
        out(f"{t.number:>4}  {t.kind:<5} {asked:>10}  {t.frames:>6}  {dl:>9}  {answer}{spans}")
    out("")
    out(
        f"turns {totals['turns']}, replies {totals['replies']}, goAways {totals['goaways']}, "
        f"resumes {totals['resumes']}, rollovers {totals['rollovers']}, "
        f"retries {totals['retries']}"
    )
    out(
        f"frames captured {totals['frames_captured']}, delivered {totals['frames_delivered']}, "
        f"lost {totals['frames_lost']}; LED showed {', '.join(totals['led_states_seen'])}"
    )
    out(
        f"reply audio: {totals['reply_wav']} ({totals['reply_wav_seconds']:.1f} s); "
        f"{totals['wall_seconds']:.1f} s wall for {totals['nominal_seconds']:.0f} s real-time"
    )
    for e in trace.errors:
        out(f"error: {e}")


def passed(totals: dict[str, Any]) -> bool:
    """The exit rule: every turn answered, nothing lost, nothing failed."""
    # frames_lost is None only against an external server (nothing to inspect).
    return (
        totals["turns"] > 0
        and totals["replies"] == totals["turns"]
        and totals["frames_lost"] in (0, None)
        and totals["errors"] == 0
        and (totals["frames_lost"] == 0 or totals["endpoint"] != "embedded")
    )


# ---------------------------------------------------------------------------------------------
# Command line


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 200:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0 and at most 200")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``voiced demo`` options."""
    parser.add_argument("--json", action="store_true", help="end with one JSON line of totals")
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help="run against this Live server instead of the embedded one "
        "(ws:// only for loopback; the key comes from the config or "
        "VOICED_API_KEY)",
    )
    parser.add_argument(
        "--time-scale",
        type=_scale,
        default=None,
        metavar="F",
        help=f"nominal seconds per wall second (default: the fastest of "
        f"{', '.join(f'{s:g}' for s in SCALE_LADDER)} this machine keeps, "
        "measured; with --endpoint: 1, or the scale that server runs at)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="directory for replies.wav and the speech files (default: a new temporary directory)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="take model, voice, session margins, audio and pin settings from "
        "this TOML file (default: built-in defaults)",
    )
    parser.add_argument(
        "--hw",
        choices=("sim",),
        default="sim",
        help="hardware backend; the demo always simulates it (default: sim)",
    )
    parser.add_argument(
        "--synthetic-speech",
        action="store_true",
        help="use the synthetic speech-like signal even if espeak-ng is installed",
    )
    parser.add_argument("--verbose", action="store_true", help="log the daemon's INFO lines too")


def main(args: argparse.Namespace) -> int:
    """``voiced demo``: see the module docstring."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        # Resolve the endpoint before anything starts, so a bad one is a one-line error.
        target = (
            external_target(args.endpoint, _load_config(args.config)) if args.endpoint else None
        )
        if args.time_scale is None:  # a real server runs at 1; the embedded one at ours
            if target is not None and not target.local:
                args.time_scale = 1.0
            else:
                args.cpu_probe_ms = round(measure_cpu(), 2)
                args.time_scale = choose_time_scale(args.cpu_probe_ms)
                args.scale_note = (
                    f"chosen for this machine (CPU probe {args.cpu_probe_ms:.1f} ms, "
                    f"reference {REFERENCE_CPU_MS:g} ms); --time-scale F overrides"
                )
        totals = asyncio.run(run_demo(args, _print))
    except (ConfigError, DemoError) as exc:
        print(f"voiced demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("voiced demo: interrupted", file=sys.stderr)
        return 130
    ok = passed(totals)
    advice = None if ok else slowness_advice(totals, args.time_scale)
    if advice:
        _print(f"slow: {advice}")
    _print(f"\nresult: {'PASS' if ok else 'FAIL'}")
    if args.json:
        _print(json.dumps(totals, separators=(",", ":")))
    return 0 if ok else 1


def _print(line: str) -> None:
    """print, surviving a closed stdout (``voiced demo | head``): the demo runs to its end
    and its exit status still counts; later output goes nowhere."""
    try:
        print(line, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
