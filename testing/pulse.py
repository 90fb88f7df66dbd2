"""A private PulseAudio with a virtual mic and speaker: the tests' and bench.idle's
(VIRTUAL_AUDIO.md). The pytest fixtures around it are in tests/virtual_audio.py."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# The sockets last, so that no client (``pactl info`` in start_server, a Mic reopening
# while a test restarts the server) can connect before every device exists.
PA_CONFIG = """\
load-module module-null-sink sink_name=micfeed rate=48000 channels=1
load-module module-null-sink sink_name=vspk rate=48000 channels=1
load-module module-remap-source source_name=vmic master=micfeed.monitor
load-module module-null-sink sink_name=hatfeed rate=48000 channels=2
set-default-sink vspk
set-default-source vmic
load-module module-cli-protocol-unix socket={cli}
load-module module-native-protocol-unix auth-anonymous=1 socket={sock}
"""

ASOUNDRC = """\
pcm.vmic { type pulse device "vmic" }
ctl.vmic { type pulse }
pcm.vspk { type pulse device "vspk" }
ctl.vspk { type pulse }
pcm.micfeed { type pulse device "micfeed" }
pcm.vhat { type pulse device "hatfeed.monitor" }
pcm.vspk_monitor { type pulse device "vspk.monitor" }
pcm.!default { type pulse }
ctl.!default { type pulse }
"""


RUNNING: list[Pulse] = []
"""The run's server while its fixture exists: tests/conftest.py stops it when unused."""


def stop_unused() -> None:
    """Stop the run's server (its keep-alives cost CPU while nobody listens); the next
    test that asks for it starts it again, and :meth:`Pulse.stop_server` is idempotent."""
    for server in RUNNING:
        server.stop_server()


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:  # fail loudly, never skip (common.md)
        raise RuntimeError(f"{tool} is required for tests/hw (apt: pulseaudio pulseaudio-utils)")
    return path


@dataclass
class Pulse:
    """A running private PulseAudio and helpers to drive it from tests."""

    root: Path
    env: dict[str, str]
    overrides: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    children: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def at(cls, root: Path) -> "Pulse":
        """A server to be run in ``root`` (made here): its asoundrc, runtime directory and
        the environment that points PulseAudio clients and PortAudio at it (``overrides``;
        ``env`` is this process's environment with them, for the children)."""
        (root / "xdg" / "alsa").mkdir(parents=True)
        (root / "xdg" / "alsa" / "asoundrc").write_text(ASOUNDRC)
        (root / "runtime").mkdir(mode=0o700)
        overrides = {
            "PULSE_SERVER": f"unix:{root / 'native'}",
            "XDG_CONFIG_HOME": str(root / "xdg"),
            "XDG_RUNTIME_DIR": str(root / "runtime"),
            "HOME": str(root),
            "JACK_NO_START_SERVER": "1",
            "PULSE_STATE_PATH": str(root / "state"),
        }
        return cls(root=root, env={**os.environ, **overrides}, overrides=overrides)

    def pactl(self, *args: str) -> str:
        """Run pactl against our server; return stdout."""
        out = subprocess.run([_need("pactl"), *args], env=self.env, capture_output=True, timeout=10)
        if out.returncode:
            raise RuntimeError(f"pactl {' '.join(args)}: {out.stderr.decode().strip()}")
        return out.stdout.decode()

    def cli(self, command: str) -> str:
        """One command on PulseAudio's CLI socket (pactl 16 has no kill-source-output)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.root / "cli"))
            sock.sendall(command.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)  # EOF ends the CLI session (its "exit" would
            # try to stop the daemon)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def spawn(self, *argv: str, stdin: int | None = None) -> subprocess.Popen[bytes]:
        """A child process with our env, killed by PID at teardown."""
        proc = subprocess.Popen(
            list(argv), env=self.env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        if stdin is not None and stdin > 2:
            os.close(stdin)  # the child has its copy
        self.children.append(proc)
        return proc

    def start_server(self) -> None:
        """Start (or restart) the pulseaudio child and its keep-alive streams."""
        sock = self.root / "native"
        pa_file = self.root / "test.pa"
        pa_file.write_text(PA_CONFIG.format(sock=sock, cli=self.root / "cli"))
        self.proc = subprocess.Popen(
            [
                _need("pulseaudio"),
                "-n",
                "-F",
                str(pa_file),
                "--daemonize=no",
                "--exit-idle-time=-1",
                "--use-pid-file=no",
                "--disallow-exit",
                "-v",
            ],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "pulse.log", "ab"),
        )
        deadline = time.monotonic() + 10
        while True:
            if (
                subprocess.run(
                    [_need("pactl"), "info"], env=self.env, capture_output=True, timeout=10
                ).returncode
                == 0
            ):
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(
                    f"private pulseaudio did not start; see {self.root / 'pulse.log'}"
                )
            time.sleep(0.05)
        for sink in ("micfeed", "vspk", "hatfeed"):  # pitfall 1: keep null sinks awake
            self.spawn(
                _need("pacat"),
                "-p",
                "-d",
                sink,
                "--latency-msec=10",
                "--raw",
                "--format=s16le",
                "--rate=48000",
                "--channels=1",
                stdin=os.open("/dev/zero", os.O_RDONLY),
            )
        time.sleep(2.1)  # let the sinks honour the low latency (pitfall 1)

    def stop_server(self) -> None:
        """Kill the keep-alives and pulseaudio by PID."""
        for proc in self.children:
            _kill(proc)
        self.children.clear()
        if self.proc is not None:
            _kill(self.proc)
            self.proc = None

    def play_into_mic(
        self, pcm: bytes, rate: int, sink: str = "micfeed", channels: int = 1
    ) -> subprocess.Popen[bytes]:
        """Play s16le ``pcm`` at ``rate`` into the virtual mic (returns the pacat).

        ``sink="hatfeed", channels=2`` feeds the two-channel ``vhat`` device instead.
        A 250 ms buffer: 20 ms underran under full CPU load and broke correlation.
        """
        proc = subprocess.Popen(
            [
                _need("pacat"),
                "-p",
                "-d",
                sink,
                "--raw",
                "--format=s16le",
                f"--rate={rate}",
                f"--channels={channels}",
                "--latency-msec=250",
            ],
            env=self.env,
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.children.append(proc)
        assert proc.stdin is not None
        proc.stdin.write(pcm)
        proc.stdin.close()
        return proc

    def record_speaker(self, rate: int, timeout: float = 10.0) -> "Recorder":
        """Record ``vspk.monitor`` as s16le mono at ``rate``; returns once the recording
        runs (its first bytes arrived), so a sound played next is heard from its start.
        ``timeout`` (wall seconds) only ends a hang."""
        proc = self.spawn(
            _need("pacat"),
            "-r",
            "-d",
            "vspk.monitor",
            "--raw",
            "--format=s16le",
            f"--rate={rate}",
            "--channels=1",
            "--latency-msec=10",
        )
        recorder = Recorder(proc)
        # pacat connects in its own time: under a busy CPU it took longer than the 0.2 s
        # the tests used to sleep, and a tone played meanwhile was heard short.
        if not recorder.started.wait(timeout):
            raise RuntimeError(f"pacat recording vspk.monitor sent nothing in {timeout:g} s")
        return recorder


class Recorder:
    """Drains a recording pacat's stdout on a thread (a full pipe would stall it)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.data = bytearray()
        self.started = threading.Event()
        """Set at the first bytes: the monitor stream is connected and running."""
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(65536):
            self.data += chunk
            self.started.set()

    def stop(self) -> bytes:
        """Kill the recorder (by PID) and return everything recorded."""
        _kill(self.proc)
        self._thread.join(timeout=5)
        return bytes(self.data)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
