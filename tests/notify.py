"""The test's side of sd_notify: a real AF_UNIX datagram socket playing systemd.

Shared by tests/runtime (the notify pieces) and tests/app (the whole daemon).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

__all__ = ["NotifyListener"]


@dataclass
class NotifyListener:
    """Binds NOTIFY_SOCKET like systemd does and records every datagram with its
    arrival time (time.monotonic())."""

    address: str  # what goes into NOTIFY_SOCKET ("/path" or "@name")
    sock: socket.socket
    messages: list[tuple[float, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def path(self) -> str:
        return self.address

    def start(self) -> None:
        self.sock.settimeout(0.05)
        threading.Thread(target=self._read, name="notify-reader", daemon=True).start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode("utf-8", "replace")))

    def snapshot(self) -> list[tuple[float, str]]:
        """Every datagram so far, with its arrival time."""
        with self._lock:
            return list(self.messages)

    def lines(self) -> list[tuple[float, str]]:
        """Every assignment line received, with its datagram's arrival time."""
        return [(t, line) for t, m in self.snapshot() for line in m.split("\n")]

    def times_of(self, assignment: str, after: float = 0.0) -> list[float]:
        """Arrival times of datagrams containing the line ``assignment`` (e.g. WATCHDOG=1)."""
        return [t for t, line in self.lines() if line == assignment and t >= after]

    def wait_for(self, assignment: str, timeout: float = 5.0, after: float = 0.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = self.times_of(assignment, after)
            if hits:
                return hits[0]
            time.sleep(0.01)
        raise AssertionError(f"no {assignment!r} within {timeout} s; got {self.lines()[-20:]!r}")

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
