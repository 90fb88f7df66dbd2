"""Idle cost: ``voiced run`` at rest beside a bare PyAudio capture of the same mic.

    python -m bench.idle [--seconds 20] [--rounds 3] [--json]

The device's most common state is idle with the mic open, all day. This measures
what that costs, side by side with the least any Python program capturing the same
device can cost:

* **voiced**: ``voiced run --hw pi`` — the real PortAudio mic (``vmic``, a private
  PulseAudio, VIRTUAL_AUDIO.md) opened at 48 kHz (at rest the mic keeps the raw
  pre-roll and resamples to 16 kHz only what a press takes: hw/mic.py), the real
  speaker stream (``vspk``), gpiozero mock pins (``GPIOZERO_PIN_FACTORY=mock``),
  connected to a local Live server (its own process here, so its work is not
  counted), control socket, STATUS and watchdog loops — at rest (state ``idle``);
* **floor**: :mod:`bench.idlefloor`, a PyAudio callback stream on the same ``vmic``
  at 48 kHz appending each buffer to a bounded deque, and nothing else.

Both run at the same time, so the machine's load hits both alike; each round
measures both over the same wall span. CPU = ``utime + stime`` of the process
(/proc/PID/stat); wakeups = the sum over its threads of the change in
``voluntary_ctxt_switches`` (/proc/PID/task/TID/status): a thread that blocks and
is woken counts one, however it was woken — a poll, a timer, a pipe, a futex. The
per-thread figures say where the wakeups are. Prints a table, and with ``--json``
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT

__all__ = ["measure_idle", "ProcStat"]

_TICK = os.sysconf("SC_CLK_TCK")


class ProcStat:
    """CPU seconds and per-thread voluntary context switches of one process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_s(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (man 5 proc)

    def switches(self) -> dict[str, int]:
        """``{"tid name": voluntary_ctxt_switches}`` of every live thread."""
        out: dict[str, int] = {}
        base = Path(f"/proc/{self.pid}/task")
        for task in base.iterdir():
            try:
                name = (task / "comm").read_text().strip()
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        out[f"{task.name} {name}"] = int(line.split()[1])
            except OSError:
                continue  # the thread ended meanwhile
        return out


def _wakeups_by_thread(
    before: dict[str, int], after: dict[str, int], seconds: float
) -> dict[str, float]:
    rates = {key: (n - before.get(key, 0)) / seconds for key, n in after.items()}
    return {k: round(v, 1) for k, v in sorted(rates.items(), key=lambda kv: -kv[1])}


def python_thread_names(pid: int) -> dict[str, str]:
    """``{tid: Python thread name}`` from ``py-spy dump`` (if py-spy is installed): the
    kernel calls every Python thread "python"; this says which is the event loop, the
    PortAudio callback, the LED… Empty without py-spy."""
    import re
    import shutil

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {}
    try:
        out = subprocess.run(
            [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names: dict[str, str] = {}
    lines = out.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r'Thread (\d+) \((\w+)\)(?:: "(.*)")?', line)
        if m:
            frame = lines[i + 1].strip().split(" (")[0] if i + 1 < len(lines) else ""
            names[m.group(1)] = m.group(3) or f"<no name> in {frame}"
    return names


def _named(threads: dict[str, float], names: dict[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, rate in threads.items():
        tid, comm = key.split(" ", 1)
        label = f"{comm} {tid}" if tid not in names else f"{names[tid]} ({tid})"
        out[label] = rate
    return out


def _write_config(tmp: Path) -> Path:
    config = tmp / "voiced.toml"
    config.write_text(
        f'[service]\nhw = "pi"\nstate_dir = "{tmp / "state"}"\n'
        f'runtime_dir = "{tmp / "run"}"\nlog_level = "INFO"\n'
        '[mic]\ndevice = "vmic"\nfallback_to_default = false\ndevice_rate = 48000\n'
        '[speaker]\ndevice = "vspk"\nfallback_to_default = false\n'
    )
    return config


def _wait_idle(
    runtime: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0
) -> dict[str, Any]:
    from daemon.cli.ctl import request

    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(
                f"voiced run exited {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            last = request(runtime, "status", 5.0)["status"]
            if last.get("state") == "idle":
                return last
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"voiced run never idle; last status {last}:\n{log.read_text(errors='replace')[-3000:]}"
    )


def _kill(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _where(raw: Path) -> dict[str, float]:
    """Share (%) of py-spy's raw samples by the innermost file of ours or a library's."""
    parts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        label = "other (no Python frame: C code)"
        for frame in reversed(stack.split(";")):
            m = re.search(
                r"\((?:.*/)?((?:daemon|hw|bench)/[\w/]+\.py)|"
                r"site-packages/(\w+)|python3\.\d+/(\w+)",
                frame,
            )
            if m:
                label = m.group(1) or m.group(2) or m.group(3)
                break
        parts[label] = parts.get(label, 0) + n
    return (
        {k: round(100 * v / total, 1) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])}
        if total
        else {}
    )


def _profile(pid: int, seconds: float, tmp: Path) -> dict[str, float]:
    """Where a running process spends its Python work (py-spy --gil: samples in which
    one of its threads holds the GIL; blocked threads and C code without it are not seen)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {}
    raw = tmp / "idle-profile.txt"
    proc = subprocess.run(
        [
            spy,
            "record",
            "--gil",
            "-r",
            "200",
            "-d",
            f"{seconds:g}",
            "-f",
            "raw",
            "-o",
            str(raw),
            "-p",
            str(pid),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    return _where(raw) if proc.returncode == 0 and raw.exists() else {}


def measure_idle(
    seconds: float = 20.0, rounds: int = 3, settle: float = 2.0, profile_s: float = 0.0
) -> dict[str, Any]:
    """Run both side by side; ``rounds`` spans of ``seconds`` each; return the figures.
    With ``profile_s``, then py-spy samples voiced at rest that long (``idle_profile``)."""
    from testing.pulse import Pulse

    with tempfile.TemporaryDirectory(prefix="voiced-idle-") as tmpdir:
        tmp = Path(tmpdir)
        root = tmp / "pulse"
        pulse = Pulse.at(root)
        procs: list[subprocess.Popen[Any]] = []
        logs: list[Any] = []
        try:
            pulse.start_server()
            env = {
                k: v
                for k, v in pulse.env.items()
                if not k.startswith(("NOTIFY_", "WATCHDOG_", "VOICED_", "CREDENTIALS_"))
            }
            env.update(
                PYTHONPATH=str(ROOT),
                GPIOZERO_PIN_FACTORY="mock",
                GPIOZERO_MOCK_PIN_CLASS="mockpwmpin",
            )
            server_log = open(tmp / "server.log", "wb")
            logs.append(server_log)
            port = _free_port()
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daemon",
                    "live-server",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                cwd=ROOT,
                env=env,
                stdout=server_log,
                stderr=subprocess.STDOUT,
            )
            procs.append(server)
            _wait_port(port, server)
            voiced_log = tmp / "voiced.log"
            vlog = open(voiced_log, "wb")
            logs.append(vlog)
            voiced = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daemon",
                    "run",
                    "--config",
                    str(_write_config(tmp)),
                    "--hw",
                    "pi",
                    "--endpoint",
                    f"ws://127.0.0.1:{port}",
                ],
                cwd=ROOT,
                env=env,
                stdout=vlog,
                stderr=subprocess.STDOUT,
            )
            procs.append(voiced)
            floor = subprocess.Popen(
                [sys.executable, "-m", "bench.idlefloor"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            procs.append(floor)
            status = _wait_idle(tmp / "run", voiced, voiced_log)
            if floor.stdout is None or not floor.stdout.readline().startswith(b"capturing"):
                raise RuntimeError(
                    f"bench.idlefloor failed: {floor.stderr.read() if floor.stderr else ''}"
                )
            time.sleep(settle)  # past start-up work (imports done, first STATUS sent)
            stats = {"voiced": ProcStat(voiced.pid), "floor": ProcStat(floor.pid)}
            per: dict[str, list[dict[str, Any]]] = {k: [] for k in stats}
            for _ in range(rounds):
                c0 = {k: s.cpu_s() for k, s in stats.items()}
                w0 = {k: s.switches() for k, s in stats.items()}
                t0 = time.monotonic()
                time.sleep(seconds)
                dt = time.monotonic() - t0
                for k, s in stats.items():
                    threads = _wakeups_by_thread(w0[k], s.switches(), dt)
                    per[k].append(
                        {
                            "cpu_s_per_hour": (s.cpu_s() - c0[k]) / dt * 3600,
                            "wakeups_per_s": sum(threads.values()),
                            "threads": threads,
                        }
                    )
            profile = _profile(voiced.pid, profile_s, tmp) if profile_s else {}
            final = _wait_idle(tmp / "run", voiced, voiced_log)
            for k, pid in (("voiced", voiced.pid), ("floor", floor.pid)):
                names = python_thread_names(pid)
                for row in per[k]:
                    row["threads"] = _named(row["threads"], names)
        finally:
            for proc in reversed(procs):
                _kill(proc)
            for f in logs:
                f.close()
            pulse.stop_server()
    ratios = [
        v["cpu_s_per_hour"] / max(f["cpu_s_per_hour"], 1e-9)
        for v, f in zip(per["voiced"], per["floor"])
    ]
    med = {
        k: {
            "cpu_s_per_hour": statistics.median(r["cpu_s_per_hour"] for r in rows),
            "wakeups_per_s": statistics.median(r["wakeups_per_s"] for r in rows),
        }
        for k, rows in per.items()
    }
    return {
        "idle_cpu_s_per_hour": round(med["voiced"]["cpu_s_per_hour"], 1),
        "idle_cpu_s_per_hour_floor": round(med["floor"]["cpu_s_per_hour"], 1),
        "idle_cpu_ratio_vs_floor": round(statistics.median(ratios), 2),
        "idle_wakeups_per_s": round(med["voiced"]["wakeups_per_s"], 1),
        "idle_wakeups_per_s_floor": round(med["floor"]["wakeups_per_s"], 1),
        "idle_threads": per["voiced"][-1]["threads"],
        "idle_threads_floor": per["floor"][-1]["threads"],
        "idle_rounds": rounds,
        "idle_seconds_per_round": seconds,
        "idle_mic": status.get("mic"),
        "idle_state_after": final.get("state"),
        "idle_profile": profile,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"live-server exited {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"live-server not listening on {port}")


def describe(r: dict[str, Any]) -> str:
    def threads(d: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:g}" for k, v in d.items() if v >= 0.5) or "none"

    return "\n".join(
        [
            f"idle cost ({r['idle_rounds']} × {r['idle_seconds_per_round']:g} s"
            f", mic {r['idle_mic']})",
            f"  voiced run  {r['idle_cpu_s_per_hour']:8.1f} CPU s/h  "
            f"{r['idle_wakeups_per_s']:7.1f} "
            f"wakeups/s   threads: {threads(r['idle_threads'])}",
            f"  floor       {r['idle_cpu_s_per_hour_floor']:8.1f} CPU s/h  "
            f"{r['idle_wakeups_per_s_floor']:7.1f} wakeups/s   "
            f"threads: {threads(r['idle_threads_floor'])}",
            f"  ratio (per round, median) {r['idle_cpu_ratio_vs_floor']:.2f}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--profile", type=float, default=0.0, help="then py-spy voiced at rest this many seconds"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    r = measure_idle(args.seconds, args.rounds, profile_s=args.profile)
    print(describe(r))
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
