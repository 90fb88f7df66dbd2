"""A real Mosquitto broker on a loopback port: for the tests, the fault matrix and `voiced demo`.

:class:`Broker` starts Debian's ``mosquitto`` on a free loopback port with a password
file and an ACL that confines each device user to its own prefix and discovery topics
(``voiced/<dev>/#``, ``homeassistant/+/voiced_<dev>/#``); the user ``ha`` (Home
Assistant) may read and write everything. It can be stopped and started again on the
same port (broker down and back).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["Broker", "have_mosquitto", "DEVICES", "PASSWORD"]

DEVICES = ("dev1", "dev2")
PASSWORD = "pw-for-tests"


def have_mosquitto() -> bool:
    return shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = directory / "mosquitto.log"
        passwd = directory / "passwd"
        passwd.write_text("")
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        for user in (*DEVICES, "ha"):
            subprocess.run(
                [tool, "-b", str(passwd), user, PASSWORD], check=True, capture_output=True
            )
        acl = directory / "acl"
        rules = []
        for dev in DEVICES:
            rules += [
                f"user {dev}",
                f"topic readwrite voiced/{dev}/#",
                f"topic write homeassistant/+/voiced_{dev}/#",
                f"topic write home/{dev}/#",
                "",
            ]
        rules += ["user ha", "topic readwrite #", ""]
        acl.write_text("\n".join(rules))
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous false",
                    f"password_file {passwd}",
                    f"acl_file {acl}",
                    "persistence false",
                    f"log_dest file {self.log}",
                    "log_type all",
                    # As root, mosquitto drops to its own user, which may not read pytest's 0700
                    # temp directory; stay who we are.
                    *(["user root"] if os.geteuid() == 0 else []),
                    "",
                ]
            )
        )

    def start(self) -> Broker:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen(
            [binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"mosquitto exited {self.proc.returncode}: {self.log_text()}"
                    ) from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
