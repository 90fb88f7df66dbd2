"""Child process of :mod:`bench.soak`: ``voiced run`` itself, living ``--hours`` of device time.

This is the daemon's own :class:`daemon.app.run.App` — state keeper and state file, control
socket, STATUS loop, systemd watchdog gate on a real ``NOTIFY_SOCKET``, SIGTERM
shutdown — with the production failure timeouts (setup, reply, close, keepalive) of
``[session]``'s defaults, at a time scale. Only the session caps are shortened to the
server's short, real-shaped limits, and only two adapters are swapped:

* :class:`SoakMic` is the mic at its real rate *all day*: 50 frames per nominal second
  from a thread of its own (as hw.mic's PortAudio callback), idle or not — so idle
  frames take the pre-roll path, across the thread hop, for the whole day;
* the speaker is the real reply path on a device clock at the same scale
  (:class:`testing.devices.PacedSpeaker`).

The button is the real hw.button.Button on a mock pin; a "user" thread asks for a turn
every 20–70 nominal seconds — pressed and released by the mic's thread, 1–6 s of audio
exactly, however starved the user thread is — and waits for the answer through the
control socket. :class:`TurnTap` sits between the adapters and the inbox and, in inbox order,
digests every turn's audio the way the core assembles it (pre-roll first) without
keeping the day's audio. Prints one JSON line: every turn's ``[sha256, frames]``, turns
never answered, the core's counters, the watchdog pings and a resource sample per
nominal hour.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import hashlib
import logging
import os
import random
import re
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

from bench.common import emit, rss_mb
from daemon.events import ButtonPressed, ButtonReleased, Event, MicFrame
from daemon.runtime.state import _TMP_PREFIX

_LIBC = ctypes.CDLL("libc.so.6")
FRAME_BYTES = 640  # 20 ms at 16 kHz, s16le mono
PRE_ROLL_MS = 300  # [session] pre_roll_ms's default; the tap mirrors the core's ring


def soak_config(tmp: Path, scale: float) -> str:
    """voiced.toml for the soak: production defaults except the session caps, which are
    the local server's short limits (bench.soak.LIMITS) told to the core."""
    return (
        f'[service]\nhw = "sim"\nstate_dir = "{tmp / "state"}"\n'
        f'runtime_dir = "{tmp / "run"}"\nlog_level = "WARNING"\n'
        "[session]\nconnection_cap = 45.0\nconnection_switch_window = 25.0\n"
        "resume_margin = 2.0\nsession_cap_audio = 240.0\nrollover_window = 30.0\n"
        f"pre_roll_ms = {PRE_ROLL_MS}\n"
        # A press is 1-6 s of audio exactly (SoakMic.press_for), but the core's clock is
        # wall time x scale: the child descheduled 0.4 s on a loaded machine is 60
        # nominal s, and the stuck-button cap ended 1-6 turns a day (reported, yet the
        # rig's doing). Capped turns stay counted (turns_capped); the cap itself is
        # tests/core/test_field.py's.
        "max_turn_seconds = 600.0\n"
        # A press lasts 1–6 nominal s, i.e. 10–60 ms of wall time at ×100: the debounce
        # lock-out (wall milliseconds) must be shorter than that.
        "[button]\ndebounce_ms = 1\n"
    )


class SoakMic:
    """50 frames per nominal second from its own thread, all day, each frame distinct
    (its index in the first 8 bytes) so every turn's digest is its own."""

    device_name = "soak"
    device_rate = 16000
    overflows = 0

    def __init__(self, post: Callable[[Event], None], scale: float, seed: int) -> None:
        self._post = post
        self._scale = scale
        rng = random.Random(seed)
        self._pool = [rng.randbytes(FRAME_BYTES - 8) for _ in range(257)]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-mic", daemon=True)
        self.frames_posted = 0
        self.longest_burst = 0
        self._press: tuple[int, Callable[[], None], Callable[[], None], threading.Event] | None = (
            None
        )

    @property
    def is_open(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)

    def press_for(
        self, frames: int, press: Callable[[], None], release: Callable[[], None]
    ) -> threading.Event:
        """Press before the next frame and release after ``frames`` more, from this
        thread: a press lasts its nominal length in audio however starved the user
        thread is (a 1-6 s press once became 40-100 nominal s on a loaded machine, and
        max_turn_seconds cut it for the rig's sake, not the daemon's)."""
        done = threading.Event()
        self._press = (frames, press, release, done)
        return done

    def _run(self) -> None:
        start = time.monotonic()
        pool, post, pack = self._pool, self._post, struct.Struct("<Q").pack
        until: int | None = None  # the frame index of the pending release
        while not self._stop.wait(0.001):
            owed = int((time.monotonic() - start) * self._scale * 50) - self.frames_posted
            self.longest_burst = max(self.longest_burst, owed)
            for _ in range(owed):  # a device never skips: late frames come in a burst
                i = self.frames_posted
                if until is None and self._press is not None:
                    until = i + self._press[0]
                    self._press[1]()
                post(MicFrame(pack(i) + pool[i % 257]))
                self.frames_posted = i + 1
                if until is not None and self.frames_posted >= until:
                    assert self._press is not None
                    _, _, release, done = self._press
                    self._press, until = None, None
                    release()
                    done.set()


class TurnTap:
    """Forwards hardware events to ``post``; digests each push-to-talk turn as the core
    assembles it (the pre-roll ring's frames, then every frame until the release).

    Recording and forwarding happen under one lock, so the order seen here is the
    order the inbox hands the events to the core (as daemon.cli.demo.trace.Tap, but in
    constant memory: a day of frames is 4.3 million).
    """

    def __init__(self, post: Callable[[Event], None], pre_roll_ms: int) -> None:
        self._post = post
        self._lock = threading.Lock()
        self._limit = pre_roll_ms * 32
        self._ring: deque[bytes] = deque()
        self._ring_bytes = 0
        self._turn: Any = None
        self._frames = 0
        self.turns: list[list[Any]] = []  # [sha256, frames]
        self.frames_seen = 0

    def post(self, event: Event) -> None:
        with self._lock:
            kind = type(event)
            if kind is MicFrame:
                self.frames_seen += 1
                pcm = event.pcm  # type: ignore[attr-defined]
                if self._turn is not None:
                    self._turn.update(pcm)
                    self._frames += 1
                else:
                    self._ring.append(pcm)
                    self._ring_bytes += len(pcm)
                    while self._ring and self._ring_bytes - len(self._ring[0]) >= self._limit:
                        self._ring_bytes -= len(self._ring.popleft())
            elif kind is ButtonPressed and self._turn is None:
                self._turn = hashlib.sha256(b"".join(self._ring))
                self._frames = len(self._ring)
                self._ring.clear()
                self._ring_bytes = 0
            elif kind is ButtonReleased and self._turn is not None:
                self.turns.append([self._turn.hexdigest(), self._frames])
                self._turn = None
            self._post(event)


def _fd_targets() -> list[str]:
    """What this process's fds point at, instance numbers dropped ("socket", "pipe",
    "anon_inode:[eventpoll]", a path), sorted: the same set twice is the same state."""
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # closed between the listing and the look (the listing's own fd)
        kind = target.split(":[")[0]
        out.append(kind if kind in ("socket", "pipe") else target)
    return sorted(out)


def _task_name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    name = task.get_name()
    # "conn-211-writer" and "conn-137-writer" are the same kind of task.
    name = "Task" if name.startswith("Task-") else re.sub(r"\d+", "N", name)
    return f"{name}:{getattr(coro, '__qualname__', coro)}"


class _Reported(logging.Handler):
    """The core's warnings by their first words, and its designed drops by the cause it
    gave ("dropped a question (it went unanswered on two connections…)"): shown next to
    its counters (SessionStats.asks_dropped, turns_capped, turns_incomplete), which are
    what the soak counts."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.drops_by_cause: dict[str, int] = {}
        self.warnings: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        prefix = "dropped a question ("
        if message.startswith(prefix):
            cause = message[len(prefix) :].rsplit("); ask again", 1)[0].split(":")[0]
            self.drops_by_cause[cause] = self.drops_by_cause.get(cause, 0) + 1
        key = message.split(";")[0].split("(")[0].strip()[:60]
        self.warnings[key] = self.warnings.get(key, 0) + 1


class NotifyListener:
    """Binds the ``NOTIFY_SOCKET`` the daemon reports to; counts watchdog pings (and
    the longest wall gap between two) and STATUS updates."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.pings = 0
        self.statuses = 0
        self.ready = threading.Event()
        self.longest_gap = 0.0
        self._last: float | None = None
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536).decode(errors="replace")
            except socket.timeout:
                continue
            except OSError:
                return
            for line in data.split("\n"):
                if line == "WATCHDOG=1":
                    now = time.monotonic()
                    if self._last is not None:
                        self.longest_gap = max(self.longest_gap, now - self._last)
                    self._last = now
                    self.pings += 1
                elif line.startswith("STATUS="):
                    self.statuses += 1
                elif line == "READY=1":
                    self.ready.set()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2.0)
        self.sock.close()


def run_day(url: str, hours: float, scale: float, seed: int, tmp: Path) -> dict[str, Any]:
    from daemon.app.endpoints import resolve
    from daemon.app.run import App, load_config
    from daemon.cli.ctl import request
    from daemon.cli.main import build_parser
    from daemon.runtime.logs import setup_logging
    from hw.sim import make_sim_hardware
    from testing.devices import PacedSpeaker

    (tmp / "voiced.toml").write_text(soak_config(tmp, scale))
    notify = NotifyListener(tmp / "notify.sock")
    os.environ.update(NOTIFY_SOCKET=str(tmp / "notify.sock"), WATCHDOG_USEC="1000000")
    os.environ.pop("WATCHDOG_PID", None)
    args = build_parser().parse_args(
        ["run", "--config", str(tmp / "voiced.toml"), "--endpoint", url, "--time-scale", str(scale)]
    )
    redactor = setup_logging(30, environ=os.environ)
    reported = _Reported()
    logging.getLogger("daemon.session").addHandler(reported)
    cfg = load_config(args, os.environ)
    parts: dict[str, Any] = {}

    class SoakApp(App):
        def _hardware(self, post: Any) -> Any:
            # --hw sim's bundle (real Button and Led on mock pins) behind the tap, with
            # the day-long mic and the scaled device clock in place of the sim ones.
            c = self.cfg
            tap = TurnTap(post, c.session.pre_roll_ms)
            hw = make_sim_hardware(
                tap.post,
                mic=c.mic,
                speaker=c.speaker,
                button=c.button,
                led=c.led,
                earcons=c.earcons,
            )
            hw.mic.close()  # never started
            hw.speaker.close()
            mic = SoakMic(tap.post, scale, seed)
            speaker = PacedSpeaker(tap.post, speed=scale, drain_ms=40)
            parts.update(tap=tap, mic=mic, soft=hw.soft_button, pins=hw.pin_factory)
            return replace(hw, mic=mic, speaker=speaker)

    app = SoakApp(cfg, resolve(cfg.live, cfg.api_key), redactor, args, os.environ)
    runtime = tmp / "run"
    rng = random.Random(seed)
    samples: list[dict[str, Any]] = []
    unanswered: list[int] = []
    out: dict[str, Any] = {}
    failure: list[BaseException] = []

    def status() -> dict[str, Any]:
        return request(runtime, "status", 10.0)["status"]

    def nominal() -> float:
        return app.supervisor.now()

    def sample() -> None:
        # At a settled moment (connected, idle: no switch half done), so open fds and
        # tasks compare exactly across the day.
        settled = wait_for(
            lambda: (st := status())["phase"] == "live" and st["state"] == "idle", 60, None
        )
        sup = app.supervisor
        loop = sup._loop

        async def tasks() -> list[str]:
            me = asyncio.current_task()
            return sorted(_task_name(t) for t in asyncio.all_tasks() if t is not me)

        for pin in (cfg.led.pin, cfg.button.pin):
            parts["pins"].pin(pin).clear_states()  # mock-pin history: the harness's, not ours
        # Quiescence, not a minimum: look every 20 ms until two looks in a row hold the same
        # fds and tasks (a socket finishing its closing handshake, the state file being
        # written in its thread, a reconnect's task is there for a moment; a leak is there
        # in every look). What was open is kept, so a difference between samples is named.
        looks: list[tuple[list[str], list[str]]] = []

        # A state save's temporary file (daemon.runtime.state's ".tmp-" prefix) is a write in
        # flight, never quiet: seen held across two looks on a loaded machine.
        def still(a: tuple[list[str], list[str]], b: tuple[list[str], list[str]]) -> bool:
            return a == b and not any(f"/{_TMP_PREFIX}" in target for target in a[0])

        for _ in range(100):
            looks.append(
                (_fd_targets(), asyncio.run_coroutine_threadsafe(tasks(), loop).result(30))
            )
            if len(looks) >= 2 and still(looks[-1], looks[-2]):
                break
            time.sleep(0.02)
        fd_list, task_list = looks[-1]
        quiet = len(looks) >= 2 and still(looks[-1], looks[-2])
        fds, n_tasks = len(fd_list), len(task_list)
        gc.collect()
        raw = rss_mb()
        _LIBC.malloc_trim(0)  # retention by glibc's arenas vs live objects that grow
        samples.append(
            {
                "nominal_h": round(nominal() / 3600, 2),
                "settled": settled,
                "quiet": quiet,
                "looks": len(looks),
                "fd_targets": fd_list,
                "task_names": task_list,
                "rss_mb": round(raw, 2),
                "rss_trimmed_mb": round(rss_mb(), 2),
                "fds": fds,
                "tasks": n_tasks,
                "threads": threading.active_count(),
                "py_heap_mb": round(sum(sys.getsizeof(o) for o in gc.get_objects()) / 2**20, 2),
            }
        )

    def user() -> None:
        try:
            if not notify.ready.wait(60):
                raise RuntimeError("no READY=1 from the daemon")
            wait_for(lambda: status()["state"] == "idle", 60, "the first idle")
            end, next_sample = hours * 3600.0, 3600.0
            tap, soft, mic = parts["tap"], parts["soft"], parts["mic"]
            while nominal() < end:
                time.sleep(rng.uniform(20, 70) / scale)
                if nominal() >= next_sample:
                    sample()
                    next_sample += 3600.0
                n = len(tap.turns) + 1
                # 1-6 nominal s of audio, pressed and released by the mic's own thread
                # between two frames (SoakMic.press_for).
                pressed = mic.press_for(int(rng.uniform(1.0, 6.0) * 50), soft.press, soft.release)
                if not pressed.wait(60):
                    raise RuntimeError(f"soak: the mic never released turn {n}")
                wait_for(lambda: len(tap.turns) >= n, 30, "the release")
                # Answered: the core counted the turn and is back to idle (nothing owed,
                # generating or playing). Not answered in 60 s wall: reported, not hidden.
                if not wait_for(
                    lambda: (st := status())["turns"] >= n and st["state"] == "idle", 60, None
                ):
                    unanswered.append(n)
            sample()
            out["status"] = status()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the production shutdown path

    def wait_for(pred: Callable[[], Any], timeout: float, what: str | None) -> bool:
        stop = time.monotonic() + timeout
        while True:
            try:
                if pred():
                    return True
            except (OSError, ValueError, KeyError):
                pass  # the control socket is not up yet
            if time.monotonic() > stop:
                if what is None:
                    return False
                raise RuntimeError(
                    f"soak: timed out waiting for {what} at "
                    f"{nominal():.0f} s nominal: {app.supervisor.stats()}; "
                    f"tap {len(parts['tap'].turns)} turns, in a turn "
                    f"{parts['tap']._turn is not None}"
                )
            time.sleep(0.002)

    driver = threading.Thread(target=user, name="soak-user", daemon=True)
    driver.start()
    code = asyncio.run(app.run())
    driver.join(30)
    notify.close()
    if failure:
        raise failure[0]
    mic, tap = parts["mic"], parts["tap"]
    return {
        "turns": tap.turns,
        "unanswered": unanswered,
        "samples": samples,
        "stats": asdict(app.supervisor.stats()),
        "exit_code": code,
        "frames_posted": mic.frames_posted,
        "frames_seen": tap.frames_seen,
        "longest_mic_burst": mic.longest_burst,
        "watchdog_pings": notify.pings,
        "watchdog_longest_gap_s": round(notify.longest_gap, 2),
        "status_updates": notify.statuses,
        "state_saves": app.keeper.saves if app.keeper else 0,
        "drops_by_cause": reported.drops_by_cause,
        "warnings": reported.warnings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--scale", type=float, default=100.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="voiced-soak-") as tmp:
        emit(run_day(args.url, args.hours, args.scale, args.seed, Path(tmp)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
