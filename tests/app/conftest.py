"""Fixtures for ``voiced run`` tests: the test is the service manager.

* :class:`Manager` binds a real AF_UNIX SOCK_DGRAM socket as ``NOTIFY_SOCKET`` and
  records every datagram with its arrival time.
* :class:`Daemon` starts the real daemon as a child process (``python -m daemon run
  --hw sim --endpoint ws://127.0.0.1:PORT/... --time-scale S``) with a temp config,
  state and runtime directory, and kills it by PID in the finaliser.
* ``live`` is an in-test :class:`LiveServerThread` at time scale ``SCALE``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from daemon.cli.ctl import request
from daemon.liveserver import LiveServerThread, ServerLimits
from tests.notify import NotifyListener

REPO = Path(__file__).resolve().parents[2]
# lgpio makes its notification pipes (.lgd-nfy*) in the current directory — the source
# tree, for tests — unless LG_WD says where when it is first imported (hw/gpio.py).
os.environ.setdefault("LG_WD", tempfile.gettempdir())
SCALE = 4.0
"""Nominal seconds per wall second, for the server and the daemon alike."""
WATCHDOG_USEC = 2_000_000
"""The watchdog timeout we give the daemon: it must ping at least every 2 s (every 1 s)."""


class Manager(NotifyListener):
    """Plays systemd's side of sd_notify (tests/notify.py), with the daemon tests' words."""

    def times(self, assignment: str, after: float = 0.0) -> list[float]:
        return self.times_of(assignment, after)

    def statuses(self) -> list[str]:
        return [line[len("STATUS=") :] for _, line in self.lines() if line.startswith("STATUS=")]

    def wait(self, assignment: str, timeout: float = 60.0, after: float = 0.0) -> float:
        # Only ends a hang: a daemon's start-up took more than 15 s on a loaded CI machine.
        return self.wait_for(assignment, timeout, after)


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[Manager]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    m = Manager(path, sock)
    m.start()
    yield m
    m.close()


@contextlib.contextmanager
def live_server(api_keys: Any = None) -> Iterator[Any]:
    """A Live server at SCALE on its own thread; ``server.thread.run(coro)`` waits on it."""
    thread = LiveServerThread(
        limits=ServerLimits(time_scale=SCALE), voice="synthetic", api_keys=api_keys
    )
    server = thread.start()
    server.thread = thread  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        thread.stop()


@pytest.fixture
def live() -> Iterator[Any]:
    """A Live server at SCALE that accepts any key."""
    with live_server() as server:
        yield server


def write_config(path: Path, tmp: Path, extra: str = "", **service: Any) -> Path:
    """A config for a sim daemon with its directories under ``tmp``."""
    values: dict[str, Any] = {
        "hw": "sim",
        "state_dir": str(tmp / "state"),
        "runtime_dir": str(tmp / "run"),
        "log_level": "INFO",
        **service,
    }
    lines = ["[service]", *(f"{key} = {_toml(value)}" for key, value in values.items())]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace('"', '\\"') + '"'


class Daemon:
    """``python -m daemon run`` as a child process."""

    def __init__(
        self,
        tmp: Path,
        config: Path,
        endpoint: str | None,
        manager: Manager | None,
        *,
        env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = (),
        watchdog_usec: int | None = WATCHDOG_USEC,
        name: str = "daemon",
    ) -> None:
        self.tmp = tmp
        self.runtime = tmp / "run"
        self.log_path = tmp / f"{name}.log"
        args = [
            sys.executable,
            "-m",
            "daemon",
            "run",
            "--config",
            str(config),
            "--hw",
            "sim",
            "--time-scale",
            str(SCALE),
            *extra_args,
        ]
        if endpoint:
            args += ["--endpoint", endpoint]
        child_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("NOTIFY_", "WATCHDOG_", "VOICED_", "CREDENTIALS_"))
        }
        child_env["PYTHONPATH"] = str(REPO)
        if manager is not None:
            child_env["NOTIFY_SOCKET"] = manager.path
        if watchdog_usec is not None:
            child_env["WATCHDOG_USEC"] = str(watchdog_usec)
        child_env.update(env or {})
        self.args = args
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            args, cwd=str(REPO), env=child_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def control(self, cmd: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        return request(self.runtime, cmd, timeout=timeout, **fields)

    def wait_control(self, timeout: float = 60.0) -> None:  # only ends a hang
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            try:
                self.control("status", timeout=1.0)
                return
            except (OSError, ValueError):
                time.sleep(0.05)
        raise AssertionError(f"control socket never answered:\n{self.log()}")

    def wait_status(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:  # only ends a hang
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.control("status")["status"]
            if predicate(st):
                return st
            time.sleep(0.05)
        raise AssertionError(f"status never matched; last {st!r}\n{self.log()}")

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon did not exit within {timeout} s:\n{self.log()}") from None

    def stop(self) -> None:
        """Finaliser: SIGKILL by PID if still running."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """``spawn(config, endpoint, manager, **kw)`` starts a daemon; all are killed at the end."""
    started: list[Daemon] = []

    def start(
        config: Path, endpoint: str | None, manager: Manager | None = None, **kw: Any
    ) -> Daemon:
        d = Daemon(tmp_path, config, endpoint, manager, name=f"daemon{len(started)}", **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
