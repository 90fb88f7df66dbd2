"""Fixtures for the service tests: a real AF_UNIX datagram socket playing the
service manager, and a child-process launcher that kills its children by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.notify import NotifyListener

CHILD = Path(__file__).with_name("notify_child.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def notify_listener(tmp_path: Path) -> Iterator[NotifyListener]:
    """A filesystem-path NOTIFY_SOCKET."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify.sock"
    sock.bind(str(path))
    listener = NotifyListener(str(path), sock)
    listener.start()
    yield listener
    listener.close()


@pytest.fixture
def abstract_listener() -> Iterator[NotifyListener]:
    """An abstract-namespace NOTIFY_SOCKET ("@name")."""
    name = f"voiced-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    listener = NotifyListener("@" + name, sock)
    listener.start()
    yield listener
    listener.close()


@dataclass
class Child:
    proc: subprocess.Popen[str]

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 10.0) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


@pytest.fixture
def spawn_child() -> Iterator:
    """Starts tests/runtime/notify_child.py with a given environment; kills by PID."""
    children: list[subprocess.Popen[str]] = []

    def spawn(*args: str, env: dict[str, str] | None = None) -> Child:
        base = {
            k: v
            for k, v in os.environ.items()
            if k
            not in (
                "NOTIFY_SOCKET",
                "WATCHDOG_USEC",
                "WATCHDOG_PID",
                "JOURNAL_STREAM",
                "INVOCATION_ID",
                "CREDENTIALS_DIRECTORY",
            )
        }
        base["PYTHONPATH"] = str(REPO)
        base.update(env or {})
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            env=base,
            cwd=str(REPO),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        children.append(proc)
        return Child(proc)

    yield spawn
    for proc in children:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
