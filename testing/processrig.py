"""``voiced run`` as a child process, with this process as its service manager.

For the faults that need a real process — SIGTERM mid-turn, kill -9 and restart — the
fault matrix starts ``python -m daemon run --hw sim`` against its local Live server,
binds an AF_UNIX datagram socket as ``NOTIFY_SOCKET`` (READY=1, STOPPING=1 …), talks
to the daemon through its control socket (daemon.cli.ctl.request) and kills it by PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from daemon.cli.ctl import request
from testing import ROOT

__all__ = ["VoicedProcess", "saved_handle"]


def saved_handle(state_dir: Path) -> str | None:
    """The resumption handle in the daemon's state file, if any."""
    try:
        doc = json.loads((state_dir / "state.json").read_text())
        return doc["payload"]["snapshot"].get("handle")
    except (OSError, ValueError, KeyError, TypeError):
        return None


class VoicedProcess:
    """One ``voiced run`` child; ``notes`` are its sd_notify lines with arrival times."""

    def __init__(self, tmp: Path, endpoint: str, scale: float, name: str = "voiced") -> None:
        self.tmp = tmp
        self.state_dir = tmp / "state"
        self.runtime = tmp / "run"
        config = tmp / "voiced.toml"
        config.write_text(
            f'[service]\nhw = "sim"\nstate_dir = "{self.state_dir}"\n'
            f'runtime_dir = "{self.runtime}"\nlog_level = "INFO"\n'
        )
        self.notes: list[tuple[float, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify = tmp / f"{name}-notify.sock"
        notify.unlink(missing_ok=True)
        self._sock.bind(str(notify))
        self._sock.settimeout(0.05)
        self._stop = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("NOTIFY_", "WATCHDOG_", "VOICED_", "CREDENTIALS_"))
        }
        env.update(NOTIFY_SOCKET=str(notify), PYTHONPATH=str(ROOT))
        self.log_path = tmp / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daemon",
                "run",
                "--config",
                str(config),
                "--hw",
                "sim",
                "--endpoint",
                endpoint,
                "--time-scale",
                str(scale),
            ],
            cwd=str(ROOT),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            self.notes.extend((now, line) for line in data.decode(errors="replace").split("\n"))

    def noted(self, assignment: str) -> float | None:
        return next((t for t, line in self.notes if line == assignment), None)

    async def wait_noted(self, assignment: str, timeout: float = 20.0) -> float:
        end = time.monotonic() + timeout
        while (t := self.noted(assignment)) is None:
            if time.monotonic() > end or self.proc.poll() is not None:
                raise TimeoutError(f"no {assignment} from voiced run:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.01)
        return t

    async def control(self, cmd: str, **fields: Any) -> dict[str, Any]:
        return await asyncio.to_thread(request, self.runtime, cmd, 5.0, **fields)

    async def status(self) -> dict[str, Any]:
        return (await self.control("status"))["status"]

    async def wait_status(self, pred: Any, timeout: float = 20.0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            try:
                st = await self.status()
                if pred(st):
                    return st
            except (OSError, ValueError):
                st = {}
            if time.monotonic() > end:
                raise TimeoutError(f"status never matched; last {st}\n{self.log()[-3000:]}")
            await asyncio.sleep(0.05)

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    async def wait_exit(self, timeout: float = 20.0) -> int:
        return await asyncio.to_thread(self.proc.wait, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._stop.set()
        self._sock.close()
        self._log.close()
