"""
``voiced check``: try each part of the device once, with a clear PASS/FAIL line each.

1. **mic** — a live level meter for a few seconds (speak!); passes when frames arrive
   at the configured rate and something louder than silence was heard;
2. **speaker** — a one-second 440 Hz test tone; passes when the speaker reports it
   played out (``PlaybackDrained``);
3. **led** — a walk through every device state's pattern (hw/led.py), reading the pin
   back to see the pattern really drives it;
4. **button** — waits for a press and a release, with a timeout;
5. **connection** — opens the configured endpoint, sends a setup and waits for
   ``setupComplete``: reachability, TLS, the API key and the model in one go.

Every part can be skipped (``--no-mic`` …). The hardware is the real adapters from
``hw/`` built from the configuration; ``run_checks`` takes a gpiozero pin factory so
tests can use mock pins. Exit status: 0 all ran parts passed, 1 some failed, 2 bad
configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import queue
import sys
import time
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from daemon.errors import ConfigError, DeviceError

__all__ = ["Result", "run_checks", "resolve_endpoint", "tone_pcm", "add_arguments", "main"]

Out = Callable[[str], None]

_STATE_WORDS = {
    "offline": "off",
    "connecting": "slow pulse",
    "idle": "dim steady",
    "listening": "full steady",
    "thinking": "fast pulse",
    "speaking": "medium blink",
    "going_away": "double blink",
    "error": "fast blink",
}


class Result:
    """The PASS/FAIL lines printed so far; ``verbose`` keeps PortAudio's stderr noise."""

    def __init__(self, out: Out, verbose: bool = True) -> None:
        self.out = out
        self.verbose = verbose
        self.failed: list[str] = []
        self.passed: list[str] = []

    def report(self, part: str, ok: bool, detail: str) -> bool:
        (self.passed if ok else self.failed).append(part)
        self.out(f"{'PASS' if ok else 'FAIL'}  {part:<10} {detail}")
        return ok


def _quiet(res: Result) -> Any:
    """PortAudio's ALSA/JACK probing prints pages to fd 2 at start(); the PASS/FAIL line
    says what matters (``--verbose`` keeps them)."""
    import contextlib

    from hw.devices import quiet_stderr, route_alsa_messages_to_log

    if res.verbose:
        return contextlib.nullcontext()
    route_alsa_messages_to_log()
    return quiet_stderr()


def _events_of(q: "queue.Queue[Any]", kind: type | tuple[type, ...], timeout: float) -> Any:
    """The next event of ``kind`` from ``q`` within ``timeout`` s (others are dropped)."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return None
        try:
            ev = q.get(timeout=left)
        except queue.Empty:
            return None
        if isinstance(ev, kind):
            return ev


def _dbfs(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    rms = math.sqrt(float(np.mean(x * x))) if x.size else 0.0
    return 20 * math.log10(rms / 32768) if rms > 0 else -120.0


def check_mic(conf: Any, res: Result, seconds: float, threshold_dbfs: float) -> bool:
    from daemon.events import DeviceLost, MicFrame
    from hw.mic import Mic

    q: "queue.Queue[Any]" = queue.Queue()
    # No waiting for a missing device here (the daemon waits; a check answers now).
    mic = Mic(replace(conf.mic, wait_for_device=False), q.put)
    res.out(f"      mic        listening for {seconds:g} s — say something")
    try:
        with _quiet(res):
            mic.start()
        frames, peak, lost = 0, -120.0, None
        end = time.monotonic() + seconds
        window: list[bytes] = []
        next_print = time.monotonic() + 0.25
        while time.monotonic() < end:
            try:
                ev = q.get(timeout=0.05)
            except queue.Empty:
                ev = None
            if isinstance(ev, MicFrame):
                frames += 1
                window.append(ev.pcm)
            elif isinstance(ev, DeviceLost):
                lost = ev.reason
            if time.monotonic() >= next_print:
                level = _dbfs(b"".join(window)) if window else -120.0
                peak = max(peak, level)
                bar = "#" * max(0, int((level + 70) / 2))
                res.out(f"      mic        {level:6.1f} dBFS |{bar:<35}|")
                window.clear()
                next_print += 0.25
        if window:
            peak = max(peak, _dbfs(b"".join(window)))
        name = mic.device_name
    except DeviceError as exc:
        return res.report("mic", False, str(exc))
    finally:
        mic.close()
    expected = seconds * 1000 / conf.mic.frame_ms
    if lost is not None:
        return res.report("mic", False, f"device lost: {lost}")
    if frames < 0.7 * expected:
        return res.report("mic", False, f"{name}: only {frames} of ~{expected:.0f} frames arrived")
    if peak < threshold_dbfs:
        return res.report(
            "mic",
            False,
            f"{name}: {frames} frames but silent (peak {peak:.1f} dBFS "
            f"< {threshold_dbfs:g}); is it muted or the wrong device?",
        )
    return res.report("mic", True, f"{name}: {frames} frames, peak {peak:.1f} dBFS")


def tone_pcm(seconds: float = 1.0, freq: float = 440.0, rate: int = 24000) -> bytes:
    """A sine tone at -10 dBFS with 10 ms fades (no clicks)."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = 0.316 * np.sin(2 * np.pi * freq * t)
    fade = min(n // 2, rate // 100)
    ramp = np.linspace(0.0, 1.0, fade)
    x[:fade] *= ramp
    x[n - fade :] *= ramp[::-1]
    return (x * 32767).astype("<i2").tobytes()


def check_speaker(conf: Any, res: Result, seconds: float) -> bool:
    from daemon.events import DeviceLost, PlaybackDrained
    from hw.speaker import Speaker

    q: "queue.Queue[Any]" = queue.Queue()
    spk = Speaker(replace(conf.speaker, wait_for_device=False), q.put)
    try:
        with _quiet(res):
            spk.start()
        name = spk.device_name
        res.out(f"      speaker    playing a {seconds:g} s 440 Hz tone on {name}")
        spk.play(tone_pcm(seconds))
        spk.end_of_reply()
        ev = _events_of(q, (PlaybackDrained, DeviceLost), seconds + 5)
    except DeviceError as exc:
        return res.report("speaker", False, str(exc))
    finally:
        spk.close()
    if isinstance(ev, DeviceLost):
        return res.report("speaker", False, f"device lost: {ev.reason}")
    if ev is None:
        return res.report("speaker", False, f"{name}: the tone never finished playing")
    return res.report("speaker", True, f"{name}: tone played out (did you hear it?)")


def check_led(conf: Any, res: Result, seconds: float, pin_factory: Any) -> bool:
    import gpiozero

    from daemon.events import DeviceState
    from hw.led import PATTERNS, Led

    try:
        led = Led(conf.led, pin_factory=pin_factory)
    except DeviceError as exc:
        return res.report("led", False, str(exc))
    s = conf.led
    factory = pin_factory or gpiozero.Device.pin_factory
    bad: list[str] = []
    try:
        for state in DeviceState:
            led.show(frozenset({state}))
            res.out(f"      led        {state.value:<11} {_STATE_WORDS.get(state.value, '')}")
            samples: list[float] = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(0.02)
                if s.rgb_pins is None:
                    level = float(factory.pin(s.pin).state)
                    samples.append(level if s.active_high else 1.0 - level)
            if samples:
                levels = [lvl * s.brightness for lvl, _ in PATTERNS[state]]
                lo, hi = min(levels) - 0.02, max(levels) + 0.02
                if not all(lo <= v <= hi for v in samples):
                    bad.append(
                        f"{state.value} drove {min(samples):.2f}..{max(samples):.2f}, "
                        f"pattern is {min(levels):.2f}..{max(levels):.2f}"
                    )
    finally:
        led.close()
    pins = s.rgb_pins if s.rgb_pins is not None else (s.pin,)
    where = "GPIO" + "/".join(str(p) for p in pins)
    if bad:
        return res.report("led", False, f"{where}: " + "; ".join(bad))
    how = "the pin followed every pattern" if s.rgb_pins is None else "look at the colours"
    return res.report("led", True, f"{where}: {len(DeviceState)} states shown, {how}")


def check_button(conf: Any, res: Result, timeout: float, pin_factory: Any) -> bool:
    from daemon.events import ButtonPressed, ButtonReleased
    from hw.button import Button

    q: "queue.Queue[Any]" = queue.Queue()
    try:
        button = Button(conf.button, q.put, pin_factory=pin_factory)
    except DeviceError as exc:
        return res.report("button", False, str(exc))
    try:
        res.out(
            f"      button     press and release the button on GPIO{conf.button.pin} "
            f"(within {timeout:g} s)"
        )
        start = time.monotonic()
        if _events_of(q, ButtonPressed, timeout) is None:
            return res.report(
                "button",
                False,
                f"GPIO{conf.button.pin}: no press within "
                f"{timeout:g} s (wiring? pull_up = {conf.button.pull_up})",
            )
        left = max(0.5, timeout - (time.monotonic() - start))
        released = _events_of(q, ButtonReleased, left)
        if released is None:
            return res.report(
                "button",
                False,
                f"GPIO{conf.button.pin}: pressed but never "
                "released (stuck, or wired to the wrong level)",
            )
    finally:
        button.close()
    return res.report(
        "button",
        True,
        f"GPIO{conf.button.pin}: pressed and released (held {released.held_for:.2f} s)",
    )


# ---------------------------------------------------------------------------------------------
# The connection


def resolve_endpoint(conf: Any, override: str | None) -> Any:
    """The :class:`daemon.app.endpoints.Target` `voiced run` would use (``--endpoint`` wins over
    ``[live] endpoint``).

    Raises:
        ConfigError: the endpoint cannot work at all (no key for the Gemini API, plain
            ws:// to another machine, …).
    """
    from daemon.app.endpoints import resolve

    live = replace(conf.live, endpoint=override) if override else conf.live
    return resolve(live, conf.api_key)


async def _try_setup(
    url: str, headers: dict[str, str], setup: str, timeout: float
) -> tuple[bool, str]:
    import websockets
    from websockets.asyncio.client import connect

    from daemon import wire

    t0 = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            async with connect(
                url,
                additional_headers=headers,
                ping_interval=None,
                max_size=16 * 1024 * 1024,
                open_timeout=timeout,
            ) as ws:
                await ws.send(setup)
                raw = await ws.recv()
    except websockets.ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else 1006
        reason = exc.rcvd.reason if exc.rcvd else "no close frame"
        hint = {
            1007: "the key or the setup was refused",
            1008: "the model or method was refused",
            1011: "the server failed",
        }.get(code, "closed")
        return False, f"{hint}: {code} {reason}"
    except websockets.InvalidStatus as exc:
        return False, f"HTTP {exc.response.status_code} at the handshake (wrong path or key?)"
    except TimeoutError:
        return False, f"no setupComplete within {timeout:g} s"
    except (OSError, websockets.InvalidURI, websockets.InvalidHandshake) as exc:
        return False, f"cannot reach the server: {exc}"
    events = wire.decode_server_message(raw)
    ms = (time.monotonic() - t0) * 1000
    if any(isinstance(e, wire.SetupComplete) for e in events):
        return True, f"setupComplete in {ms:.0f} ms"
    return False, f"the first answer was not setupComplete: {[type(e).__name__ for e in events]}"


async def _check_connection_async(
    conf: Any, override: str | None, timeout: float
) -> tuple[bool, str]:
    from daemon import wire

    target = resolve_endpoint(conf, override)
    live = conf.live
    setup = wire.encode(
        wire.setup_message(
            wire.SetupConfig(
                model=target.model,
                voice=live.voice or None,
                language=live.language or None,
                system_instruction=live.system_instruction or None,
            )
        )
    )
    if not target.local:
        headers = dict(target.endpoint.headers)  # a Bearer token is fetched here (Vertex)
        ok, detail = await _try_setup(target.endpoint.url, headers, setup, timeout)
        keyed = " (key accepted)" if ok and "x-goog-api-key" in headers else ""
        return ok, f"{target.describe()}: {detail}{keyed}"
    from daemon.liveserver import LiveServer

    async with LiveServer(voice="synthetic") as server:
        ok, detail = await _try_setup(server.endpoint(), {}, setup, timeout)
    return ok, f"the embedded local Live server (no key needed): {detail}"


def check_connection(conf: Any, res: Result, override: str | None, timeout: float) -> bool:
    try:
        ok, detail = asyncio.run(_check_connection_async(conf, override, timeout))
    except ConfigError as exc:
        return res.report("connection", False, str(exc))
    return res.report("connection", ok, detail)


# ---------------------------------------------------------------------------------------------


def run_checks(
    args: argparse.Namespace, out: Out = print, pin_factory: Any = None, verbose: bool = True
) -> Result:
    """Run the parts ``args`` asks for; ``pin_factory`` is gpiozero's (None: its default).

    Raises:
        ConfigError: the configuration file is wrong.
    """
    from daemon.app import config as cfg

    conf = cfg.load(args.config)
    res = Result(out, verbose)
    out(f"voiced check (configuration: {conf.source})")
    if not args.no_mic:
        check_mic(conf, res, args.mic_seconds, args.mic_threshold)
    if not args.no_speaker:
        check_speaker(conf, res, 1.0)
    if not args.no_led:
        check_led(conf, res, args.led_seconds, pin_factory)
    if not args.no_button:
        check_button(conf, res, args.button_timeout, pin_factory)
    if not args.no_connection:
        check_connection(conf, res, args.endpoint, args.connect_timeout)
    total = len(res.passed) + len(res.failed)
    out(
        f"{len(res.passed)}/{total} passed"
        + (f"; failed: {', '.join(res.failed)}" if res.failed else "")
    )
    return res


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``voiced check`` options."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="configuration to check (default: "
        "/etc/voiced/voiced.toml if it exists, else the defaults)",
    )
    parser.add_argument(
        "--endpoint",
        metavar="URL",
        help="check this Live server instead of live.endpoint (ws:// only for loopback)",
    )
    for part in ("mic", "speaker", "led", "button", "connection"):
        parser.add_argument(f"--no-{part}", action="store_true", help=f"skip the {part} check")
    parser.add_argument(
        "--mic-seconds",
        type=float,
        default=3.0,
        metavar="S",
        help="how long the level meter runs (default: %(default)s)",
    )
    parser.add_argument(
        "--mic-threshold",
        type=float,
        default=-60.0,
        metavar="DBFS",
        help="peak level the mic must reach to pass (default: %(default)s)",
    )
    parser.add_argument(
        "--led-seconds",
        type=float,
        default=1.5,
        metavar="S",
        help="how long each LED state is shown (default: %(default)s)",
    )
    parser.add_argument(
        "--button-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="how long to wait for a press (default: %(default)s)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show PortAudio's probing messages and the adapters' log lines",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="how long to wait for setupComplete (default: %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    """``voiced check``."""
    import logging

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        res = run_checks(args, lambda line: print(line, flush=True), verbose=args.verbose)
    except ConfigError as exc:
        print(f"voiced check: {exc}", file=sys.stderr)
        return 2
    return 1 if res.failed else 0
