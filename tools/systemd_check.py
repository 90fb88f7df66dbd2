#!/usr/bin/env python3
"""The README's service claims, checked under a real systemd (issue 14).

Boots a Debian 12 (bookworm) userland with systemd as PID 1 in a systemd-nspawn
container, installs voiced from this working tree with ``tools/install.sh --no-key``
(one drop-in adding ``--hw sim``: a container has no sound card and no GPIO), and
checks every claim README.md "Install on a Pi" makes about the service. One
PASS/FAIL line per claim, a summary, exit status 1 if any claim fails (2: the check
itself could not run). Run it as root on Debian 12::

    sudo bash tools/systemd-check.sh            # or: sudo python3 tools/systemd_check.py

The rootfs is made once with debootstrap (about 4 minutes, 770 MB) and kept in
``/var/cache/voiced-systemd-check`` (``--cache``); pip's cache is kept there too.
Each run boots an overlay of it, so nothing of a run survives the next (``--keep``
leaves it for a look). Only the host's package mirrors are contacted.

How a real systemd is had on a machine whose PID 1 is not systemd (REAL_SYSTEMS.md):
``--register=no --keep-unit`` (no machined, no scope to ask for), a tmpfs on
``/run/systemd/nspawn`` (nspawn refuses a disk file system there),
``SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`` (pure cgroup v2, as on a Bookworm Pi),
``--system-call-filter=bpf`` (else the container's systemd silently does not enforce
``DevicePolicy=``), and commands run inside through ``nsenter`` on the container's
PID 1. The host's extra CA certificates are copied in, for hosts that reach PyPI
through a TLS-intercepting proxy.

Standard library only: it runs with the host's python3, before any venv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
CACHE = Path("/var/cache/voiced-systemd-check")
PACKAGES = (
    "systemd,systemd-sysv,dbus,libpam-systemd,libnss-systemd,python3,python3-venv,"
    "python3-dev,gcc,pkg-config,portaudio19-dev,libsystemd-dev,procps,ca-certificates,"
    "util-linux,passwd"
)
"""What debootstrap adds to minbase: systemd as init, and what tools/install.sh builds with
(so its apt step finds everything installed and the check needs no apt at run time)."""
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KEY = "AIzaSy-voiced-systemd-check-" + os.urandom(6).hex()
"""A credential that must never show up anywhere but $CREDENTIALS_DIRECTORY."""
PROVING_START, PROVING_END = "<!-- systemd-check:start -->", "<!-- systemd-check:end -->"


class CheckError(Exception):
    """The check itself could not run (not a claim failing)."""


# -- the container -----------------------------------------------------------------------


def _host_mirror() -> str:
    """The host's Debian mirror (deb822 sources first, then sources.list)."""
    texts = [
        p.read_text(errors="replace")
        for p in sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    ]
    for text in texts:
        for stanza in text.split("\n\n"):
            if re.search(r"^Suites:.*\bbookworm\b", stanza, re.M) and "security" not in stanza:
                m = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if m:
                    return m.group(1)
    lists = Path("/etc/apt/sources.list")
    if lists.exists():
        m = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", lists.read_text(), re.M)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def _run(
    cmd: list[str], *, timeout: float = 600, check: bool = True, **kw: Any
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise CheckError(
            f"{shlex.join(cmd)} exited {proc.returncode}: "
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
        )
    return proc


def prepare_rootfs(cache: Path, log: Callable[[str], None]) -> Path:
    """The cached bookworm rootfs, made with debootstrap when it is not there yet."""
    rootfs = cache / "bookworm"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two checks at once: one debootstrap
        if not (rootfs / ".voiced-check-ready").exists():
            partial = cache / "bookworm.partial"
            shutil.rmtree(partial, ignore_errors=True)
            mirror = _host_mirror()
            log(f"debootstrap bookworm from {mirror} into {rootfs} (once; about 4 minutes)")
            started = time.monotonic()
            _run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={PACKAGES}",
                    "bookworm",
                    str(partial),
                    mirror,
                ],
                timeout=3600,
            )
            shutil.rmtree(rootfs, ignore_errors=True)
            partial.rename(rootfs)
            (rootfs / ".voiced-check-ready").write_text(f"{time.monotonic() - started:.0f}\n")
        # The host's extra CAs (a TLS-intercepting proxy to PyPI): pip must trust them
        # too, and pip reads its own bundle unless told otherwise.
        extra = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
        target = rootfs / "usr/local/share/ca-certificates"
        if extra and any(not (target / c.name).exists() for c in extra):
            target.mkdir(parents=True, exist_ok=True)
            for cert in extra:
                shutil.copy2(cert, target / cert.name)
            _run(["chroot", str(rootfs), "update-ca-certificates"])
            (rootfs / "etc/pip.conf").write_text(
                "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
            )
    return rootfs


@dataclass
class Container:
    """One booted container on an overlay of the cached rootfs."""

    lower: Path
    workdir: Path
    name: str
    log: Callable[[str], None]
    root: Path = field(init=False)
    nspawn: subprocess.Popen[bytes] | None = None
    pid1: int = 0
    boots: int = 0

    def __post_init__(self) -> None:
        self.root = self.workdir / "root"

    def mount(self) -> None:
        for sub in ("upper", "work", "root"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        _run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={self.lower},upperdir={self.workdir / 'upper'},"
                f"workdir={self.workdir / 'work'}",
                str(self.root),
            ]
        )

    def boot(self, timeout: float = 120.0) -> float:
        """Boot (again) and wait until systemd says running/degraded; seconds taken."""
        nspawn_dir = Path("/run/systemd/nspawn")
        nspawn_dir.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["mountpoint", "-q", str(nspawn_dir)]).returncode != 0:
            _run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(nspawn_dir)])
        pip_cache = self.workdir.parent.parent / "pip-cache"
        pip_cache.mkdir(exist_ok=True)
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        self.boots += 1
        console = open(self.workdir / f"console-{self.boots}.log", "wb")
        started = time.monotonic()
        self.nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                f"--directory={self.root}",
                f"--machine={self.name}",
                "--register=no",
                "--keep-unit",
                "--boot",
                "--console=read-only",
                "--system-call-filter=bpf",
                "--resolv-conf=copy-host",
                "--timezone=off",
                f"--bind={pip_cache}:/root/.cache/pip",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = started + timeout
        while not self.pid1:
            if self.nspawn.poll() is not None:
                raise CheckError(
                    f"systemd-nspawn exited {self.nspawn.returncode}: "
                    f"{(self.workdir / f'console-{self.boots}.log').read_text()[-2000:]}"
                )
            if time.monotonic() > deadline:
                raise CheckError("the container's PID 1 never appeared")
            self.pid1 = _container_init(self.nspawn.pid) or 0
            time.sleep(0.1)
        state = ""
        while time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return time.monotonic() - started
            time.sleep(0.3)
        raise CheckError(f"systemd in the container never came up (last: {state!r})")

    def reboot(self) -> float:
        """``systemctl reboot`` inside; nspawn exits; boot the same tree again."""
        assert self.nspawn is not None
        self.sh("systemctl reboot", check=False)
        try:
            self.nspawn.wait(60)
        except subprocess.TimeoutExpired:
            raise CheckError("the container did not shut down for the reboot") from None
        self.pid1 = 0
        return self.boot()

    def exec(
        self, argv: list[str], *, timeout: float = 120, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` inside the container (all its namespaces, its root), as root."""
        cmd = [
            "nsenter",
            f"--target={self.pid1}",
            "--mount",
            "--uts",
            "--ipc",
            "--net",
            "--pid",
            "--cgroup",
            "--root",
            "--wd",
            "--",
            "env",
            "-i",
            f"PATH={PATH}",
            "HOME=/root",
            "LANG=C.UTF-8",
            *argv,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise CheckError(
                f"in the container: {shlex.join(argv)} exited {proc.returncode}: "
                f"{(proc.stderr + proc.stdout).strip()[-3000:]}"
            )
        return proc

    def sh(self, script: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.exec(["sh", "-c", script], **kw)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def stop(self) -> None:
        if self.nspawn is not None and self.nspawn.poll() is None:
            with contextlib.suppress(CheckError, subprocess.TimeoutExpired):
                self.sh("systemctl poweroff", check=False, timeout=20)
            try:
                self.nspawn.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.nspawn.pid, signal.SIGKILL)
                self.nspawn.wait(10)

    def unmount(self) -> None:
        subprocess.run(["umount", str(self.root)], capture_output=True)


def _container_init(nspawn_pid: int) -> int | None:
    """The host PID of the container's PID 1: a descendant of nspawn whose innermost
    namespace PID is 1."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        ppid = int(re.search(r"^PPid:\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]
        children.setdefault(ppid, []).append(int(status.parent.name))
    todo = list(children.get(nspawn_pid, []))
    while todo:
        pid = todo.pop()
        try:
            nspid = re.search(r"^NSpid:\s+(.*)$", Path(f"/proc/{pid}/status").read_text(), re.M)
        except OSError:
            continue
        if nspid and nspid.group(1).split()[-1] == "1" and len(nspid.group(1).split()) > 1:
            return pid
        todo.extend(children.get(pid, []))
    return None


# -- the claims --------------------------------------------------------------------------


@dataclass
class Result:
    claim: str
    ok: bool
    detail: str


class Checks:
    """Every README service claim, in an order where each leaves the service running."""

    def __init__(self, box: Container, say: Callable[[str], None]) -> None:
        self.box, self.say = box, say
        self.results: list[Result] = []
        self.figures: dict[str, float] = {}
        self.settings: dict[str, dict[str, Any]] = {}
        """What the configuration sets beyond the shipped example."""

    # -- helpers

    def claim(self, name: str, ok: bool, detail: str) -> bool:
        self.results.append(Result(name, bool(ok), detail))
        self.say(f"{'PASS' if ok else 'FAIL'}  {name} — {detail}")
        return bool(ok)

    def attempt(self, name: str, body: Callable[[], tuple[bool, str]]) -> bool:
        try:
            ok, detail = body()
        except Exception as exc:  # a claim that cannot be checked fails; the others still run
            ok, detail = False, f"{type(exc).__name__}: {exc}"[:600]
        return self.claim(name, ok, detail)

    def show(self, *props: str) -> dict[str, str]:
        out = self.box.exec(["systemctl", "show", "voiced", *(f"--property={p}" for p in props)])
        return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)

    def journal(self, since: float, unit: bool = True) -> list[dict[str, Any]]:
        argv = ["journalctl", "--no-pager", "-o", "json", f"--since=@{int(since)}"]
        if unit:
            argv += ["-u", "voiced"]
        out = self.box.exec(argv, timeout=60).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    @staticmethod
    def messages(entries: list[dict[str, Any]]) -> list[str]:
        out = []
        for e in entries:
            msg = e.get("MESSAGE", "")
            out.append(bytes(msg).decode(errors="replace") if isinstance(msg, list) else str(msg))
        return out

    def wait_for(self, what: str, predicate: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.25)
        raise CheckError(f"{what}: not within {timeout:g} s")

    def status(self, user: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["/opt/voiced/bin/voiced", "status", "--json"]
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        return self.box.exec(argv, check=False, timeout=30)

    def status_json(self) -> dict[str, Any]:
        proc = self.status()
        if proc.returncode != 0:
            raise CheckError(f"voiced status exited {proc.returncode}: {proc.stderr.strip()}")
        return json.loads(proc.stdout)

    def wait_idle(self, timeout: float = 60.0) -> dict[str, Any]:
        def idle() -> dict[str, Any] | None:
            proc = self.status()
            if proc.returncode == 0:
                st = json.loads(proc.stdout)
                if st.get("state") == "idle":
                    return st
            return None

        return self.wait_for("voiced status says idle", idle, timeout)

    def main_pid(self) -> int:
        return int(self.show("MainPID")["MainPID"])

    def config(self, **changes: dict[str, Any]) -> None:
        """/etc/voiced/voiced.toml: the shipped example (every key commented out) plus
        ``self.settings`` updated with ``changes`` ({section: {key: value}}), root:voiced 0640."""
        sections = {name: dict(values) for name, values in self.settings.items()}
        for name, values in changes.items():
            sections.setdefault(name, {}).update(values)
        text = (REPO / "systemd/voiced.toml.example").read_text()
        for name, values in sections.items():
            keys = "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())
            header = f"\n[{name}]\n"
            # The example has every section's header, its keys commented out.
            text = (
                text.replace(header, header + keys, 1) if header in text else text + header + keys
            )
        path = self.box.root / "etc/voiced/voiced.toml"
        path.write_text(text)
        gid = int(self.box.exec(["getent", "group", "voiced"]).stdout.split(":")[2])
        os.chown(path, 0, gid)
        path.chmod(0o640)

    # -- install

    def install(self) -> bool:
        def body() -> tuple[bool, str]:
            src = self.box.root / "root/voiced"
            shutil.rmtree(src, ignore_errors=True)
            patterns = shutil.ignore_patterns(
                ".venv",
                ".git",
                "__pycache__",
                "*.egg-info",
                "build",
                ".pytest_cache",
                ".hypothesis",
                "*.wav",
            )

            def ignore(directory: str, names: list[str]) -> set[str]:
                # Only files and directories: sockets and FIFOs (lgpio's .lgd-nfy*) stay.
                odd = {
                    n
                    for n in names
                    if not (
                        os.path.isfile(os.path.join(directory, n))
                        or os.path.isdir(os.path.join(directory, n))
                    )
                }
                return set(patterns(directory, names)) | odd

            shutil.copytree(REPO, src, ignore=ignore, symlinks=True)
            started = time.monotonic()
            proc = self.box.exec(
                ["bash", "/root/voiced/tools/install.sh", "--no-key", "--no-start"],
                check=False,
                timeout=1800,
            )
            took = time.monotonic() - started
            self.figures["install_s"] = round(took, 1)
            if proc.returncode != 0:
                return False, f"install.sh exited {proc.returncode}: {proc.stderr.strip()[-800:]}"
            # The one drop-in: no sound card and no GPIO in a container.
            self.box.write(
                "/etc/systemd/system/voiced.service.d/10-systemd-check.conf",
                "[Service]\nExecStart=\nExecStart=/opt/voiced/bin/voiced run --hw sim\n",
            )
            self.box.exec(["systemctl", "daemon-reload"])
            enabled = self.box.exec(
                ["systemctl", "is-enabled", "voiced"], check=False
            ).stdout.strip()
            return enabled == "enabled", (
                f"tools/install.sh --no-key in {took:.0f} s, unit "
                f"{enabled}; drop-in: ExecStart=… run --hw sim"
            )

        return self.attempt(
            "install: tools/install.sh --no-key builds /opt/voiced, enables the unit", body
        )

    # -- claims

    def ready_and_status(self) -> None:
        def body() -> tuple[bool, str]:
            self.config()
            started = time.monotonic()
            # Type=notify: `systemctl start` returns only once READY=1 arrived.
            self.box.exec(["systemctl", "start", "voiced"], timeout=90)
            took = time.monotonic() - started
            self.figures["ready_s"] = round(took, 2)
            st = self.show("ActiveState", "SubState", "StatusText", "Type")
            text = st["StatusText"]
            ok = (st["ActiveState"], st["SubState"], st["Type"]) == ("active", "running", "notify")
            ok = ok and bool(re.match(r"(connecting|idle|offline|starting)\b", text))
            idle = self.wait_idle()
            # Kept current: the ages in STATUS= move on their own (refreshed every 5 s).
            later = self.wait_for(
                "STATUS= shows the session ageing",
                lambda: (
                    t
                    if (t := self.show("StatusText")["StatusText"]).startswith("idle; session")
                    and not t.startswith("idle; session 0s")
                    else None
                ),
                30,
            )
            return ok and idle["state"] == "idle", (
                f'READY=1 after {took:.2f} s (start returned); STATUS="{text}", later "{later}"'
            )

        self.attempt("READY=1 once the hardware is open, STATUS= kept current", body)

    def sandbox_clean(self, since: float) -> None:
        def body() -> tuple[bool, str]:
            text = "\n".join(self.messages(self.journal(since)))
            bad = [
                w
                for w in (
                    "EPERM",
                    "Operation not permitted",
                    "SIGSYS",
                    "Bad system call",
                    "Traceback",
                    "not applied",
                    "Permission denied",
                )
                if w in text
            ]
            out = self.box.exec(
                ["systemd-analyze", "security", "voiced", "--no-pager"], check=False
            ).stdout
            m = re.search(r"Overall exposure level for voiced\.service:\s*([\d.]+)\s+(\S+)", out)
            claimed = re.search(
                r"`systemd-analyze security voiced` rates it ([\d.]+)",
                (REPO / "README.md").read_text(),
            )
            exposure = f"{m.group(1)} {m.group(2)}" if m else "?"
            same = bool(m and claimed and float(m.group(1)) <= float(claimed.group(1)))
            return not bad and same, (
                f"journal free of {bad or 'EPERM/SIGSYS/tracebacks/chown warnings'}; "
                f"systemd-analyze security {exposure} (README: "
                f"{claimed.group(1) if claimed else '?'})"
            )

        self.attempt(
            "sandboxed: no EPERM/SIGSYS under the full sandbox, exposure as the README says", body
        )

    def groups(self) -> None:
        def member() -> tuple[bool, str]:
            self.box.exec(["sh", "-c", "id alice >/dev/null 2>&1 || useradd -m -G voiced alice"])
            proc = self.status("alice")
            mode = self.box.exec(
                ["stat", "-c", "%a %U:%G", "/run/voiced", "/run/voiced/control.sock"]
            ).stdout.split("\n")
            ok = proc.returncode == 0 and json.loads(proc.stdout).get("state")
            return bool(ok), (
                f"alice (group voiced): voiced status exit {proc.returncode}; "
                f"/run/voiced {mode[0]}, control.sock {mode[1]}"
            )

        self.attempt(
            "group voiced reaches the control socket (usermod -aG voiced is enough)", member
        )

        def other() -> tuple[bool, str]:
            self.box.exec(["sh", "-c", "id bob >/dev/null 2>&1 || useradd -m bob"])
            proc = self.status("bob")
            err = proc.stderr.strip()
            ok = proc.returncode == 4 and "\n" not in err and "Traceback" not in err
            return ok, f"bob (not in voiced): exit {proc.returncode}, stderr {err!r}"

        self.attempt("a user outside group voiced gets exit 4 and one line", other)

    def journal_fields(self, since: float) -> None:
        def body() -> tuple[bool, str]:
            entries = self.journal(since)
            found = {
                key: next((str(e[key]) for e in entries if key in e), None)
                for key in ("STATE", "SESSION_ID", "CLOSE_CODE")
            }
            filtered = (
                self.box.exec(
                    ["journalctl", "-u", "voiced", "--no-pager", "-o", "cat", "STATE=idle"]
                )
                .stdout.strip()
                .splitlines()
            )
            return all(found.values()) and bool(filtered), (
                ", ".join(f"{k}={v}" for k, v in found.items())
                + f"; `journalctl -u voiced STATE=idle` gives {len(filtered)} lines"
            )

        self.attempt(
            "journal fields STATE=, SESSION_ID=, CLOSE_CODE= (journalctl -u voiced STATE=idle)",
            body,
        )

    def reload_instruction(self) -> None:
        def body() -> tuple[bool, str]:
            new = "You are the systemd check's assistant. Answer with one word."
            since = time.time()
            pid = self.main_pid()
            self.settings.setdefault("live", {})["system_instruction"] = new
            self.config()
            self.box.exec(["systemctl", "reload", "voiced"], timeout=60)

            def reloaded() -> list[str] | None:
                msgs = self.messages(self.journal(since))
                return msgs if any(m.startswith("reloaded") for m in msgs) else None

            msgs = self.wait_for("the reload logged", reloaded, 30)
            applied = any(
                "system instruction changed: applying it mid-conversation" in m for m in msgs
            )
            state = self.wait_for(
                "the new instruction saved",
                lambda: s if (s := self._state()).get("system_instruction") == new else None,
                30,
            )
            same = self.main_pid() == pid
            return applied and same and bool(state), (
                f"`systemctl reload` (same PID {pid}): journal "
                f'"system instruction changed: applying it mid-conversation"; saved state has it'
            )

        self.attempt(
            "reload re-reads the file; a new system_instruction applies mid-conversation", body
        )

    def _state(self) -> dict[str, Any]:
        proc = self.box.exec(["cat", "/var/lib/voiced/state.json"], check=False)
        try:
            return json.loads(proc.stdout)["payload"]["snapshot"]
        except (ValueError, KeyError, TypeError):
            return {}

    def restart_continues(self, external: bool) -> None:
        name = (
            "restart resumes the same Live session (a separate Live server)"
            if external
            else "restart continues the conversation with the embedded server, no 1008 last error"
        )

        def body() -> tuple[bool, str]:
            word = f"zebra-{os.urandom(2).hex()}"
            say = self.box.exec(
                ["/opt/voiced/bin/voiced", "say", f"remember the word {word}"], check=False
            )
            if say.returncode != 0:
                return False, f"voiced say: {say.stderr.strip()}"

            def saved() -> bool:
                state = self._state()
                return bool(state.get("handle")) and any(
                    word in h.get("text", "") for h in state.get("history", [])
                )

            self.wait_for("the question in the saved history and a handle", saved, 60)
            self.wait_idle()
            since = time.time()
            self.box.exec(["systemctl", "restart", "voiced"], timeout=90)
            st = self.wait_idle()
            msgs = self.messages(self.journal(since))
            restored = next((m for m in msgs if m.startswith("restored the conversation")), "")
            refused = [m for m in msgs if "resumption refused" in m or "session not found" in m]
            if external:
                ok = "resuming the same session" in restored and not refused
                ok = ok and any(m.startswith("resumed session") or "resumed" in m for m in msgs)
            else:
                ok = "a fresh session with context" in restored and not refused
                ok = ok and any(re.search(r"[1-9]\d* turns restored", m) for m in msgs)
            ok = ok and not st.get("last_error")
            return ok, (
                f'journal: "{restored}"; last error {st.get("last_error")!r}; '
                f"refusals {len(refused)}"
            )

        self.attempt(name, body)

    def credential(self) -> None:
        def body() -> tuple[bool, str]:
            key_path = self.box.root / "etc/voiced/api-key"
            key_path.write_text(KEY + "\n")
            key_path.chmod(0o600)
            since = time.time()
            self.box.exec(["systemctl", "restart", "voiced"], timeout=90)
            self.wait_idle()
            self.box.exec(["/opt/voiced/bin/voiced", "say", "is the key safe?"], check=False)
            time.sleep(2)
            pid = self.main_pid()
            places = {
                "/proc/PID/environ": self.box.exec(
                    ["cat", f"/proc/{pid}/environ"], check=False
                ).stdout,
                "ps": self.box.exec(["ps", "-eo", "args"]).stdout,
                "journal (DEBUG)": "\n".join(self.messages(self.journal(since, unit=False))),
                "systemctl show": self.box.exec(["systemctl", "show", "voiced"]).stdout,
                "STATUS=": self.show("StatusText")["StatusText"],
                "voiced status": self.status().stdout,
                "voiced config": self.box.exec(["/opt/voiced/bin/voiced", "config"]).stdout,
            }
            seen = [where for where, text in places.items() if KEY in text]
            cred = self.box.exec(
                ["sh", "-c", "cat /run/credentials/voiced.service/api-key"], check=False
            ).stdout.strip()
            return not seen and cred == KEY, (
                f"key in $CREDENTIALS_DIRECTORY/api-key only; searched {', '.join(places)}: "
                f"{'found in ' + ', '.join(seen) if seen else 'absent'}"
            )

        self.attempt(
            "the API key (LoadCredential=) never shows in environ, ps, journal, show, STATUS", body
        )

    def watchdog(self) -> None:
        def body() -> tuple[bool, str]:
            self.box.write(
                "/etc/systemd/system/voiced.service.d/20-watchdog.conf",
                "[Service]\nWatchdogSec=5s\n",
            )
            self.box.exec(["systemctl", "daemon-reload"])
            self.box.exec(["systemctl", "restart", "voiced"], timeout=90)
            self.wait_idle()
            before = self.show("NRestarts", "MainPID")
            pid = int(before["MainPID"])
            since = time.time()
            # A wedged daemon: the loop stops, so do the pings.
            self.box.exec(["kill", "-STOP", str(pid)])
            stopped_at = time.monotonic()
            self.wait_for(
                "systemd restarted it",
                lambda: (
                    int(self.show("NRestarts")["NRestarts"]) > int(before["NRestarts"])
                    and self.main_pid() not in (0, pid)
                ),
                60,
            )
            took = time.monotonic() - stopped_at
            msgs = self.messages(self.journal(since))
            timeout_seen = any("Watchdog timeout" in m or "watchdog" in m.lower() for m in msgs)
            self.wait_idle()
            self.box.exec(["rm", "/etc/systemd/system/voiced.service.d/20-watchdog.conf"])
            self.box.exec(["systemctl", "daemon-reload"])
            self.box.exec(["systemctl", "restart", "voiced"], timeout=90)
            self.wait_idle()
            self.figures["watchdog_restart_s"] = round(took, 1)
            return timeout_seen, (
                f"WatchdogSec=5s + kill -STOP {pid}: killed and restarted "
                f"after {took:.1f} s (journal: watchdog timeout)"
            )

        self.attempt("watchdog: a wedged daemon is killed and restarted", body)

    def crash_restart(self) -> None:
        def body() -> tuple[bool, str]:
            before = self.show("NRestarts", "MainPID")
            pid = int(before["MainPID"])
            self.box.exec(["kill", "-9", str(pid)])
            started = time.monotonic()
            self.wait_for(
                "restarted after a crash",
                lambda: (
                    int(self.show("NRestarts")["NRestarts"]) > int(before["NRestarts"])
                    and self.show("ActiveState")["ActiveState"] == "active"
                ),
                60,
            )
            self.wait_idle()
            return True, (
                f"kill -9 {pid}: restarted after {time.monotonic() - started:.1f} s (RestartSec=5s)"
            )

        self.attempt("Restart=on-failure: a crash is restarted, no start limit", body)

    def stop_fast(self) -> None:
        def body() -> tuple[bool, str]:
            since = time.time()
            started = time.monotonic()
            self.box.exec(["systemctl", "stop", "voiced"], timeout=60)
            took = time.monotonic() - started
            st = self.show("ExecMainStatus", "ActiveState", "Result")
            msgs = self.messages(self.journal(since))
            saved = any(m.startswith("x stopped") for m in msgs)
            closed = any("1000" in m and "closed" in m for m in msgs)
            self.figures["stop_s"] = round(took, 2)
            ok = took < 15 and st["ExecMainStatus"] == "0" and st["Result"] == "success" and saved
            return ok and closed, (
                f"`systemctl stop` took {took:.2f} s (TimeoutStopSec=15s), exit "
                f"{st['ExecMainStatus']}, result {st['Result']}, connection "
                f"{'closed 1000' if closed else 'NOT closed 1000'}, state "
                f"{'saved' if saved else 'NOT saved'}"
            )

        self.attempt("SIGTERM: closes 1000, saves, exits 0 well within TimeoutStopSec", body)

    def bad_config(self) -> None:
        def body() -> tuple[bool, str]:
            before = int(self.show("NRestarts")["NRestarts"])
            self.config(button={"pin": 40})
            since = time.time()
            self.box.exec(["systemctl", "restart", "voiced"], check=False, timeout=90)
            time.sleep(8)  # > RestartSec=5s: a restart would have happened by now
            st = self.show("ExecMainStatus", "ActiveState", "NRestarts")
            msgs = self.messages(self.journal(since))
            line = next((m for m in msgs if "button.pin = 40" in m), "")
            ok = (
                st["ExecMainStatus"] == "78"
                and st["ActiveState"] == "failed"
                and int(st["NRestarts"]) == before
                and bool(line)
            )
            self.config()
            self.box.exec(["systemctl", "reset-failed", "voiced"], check=False)
            return ok, (
                f"exit {st['ExecMainStatus']}, {st['ActiveState']}, restarts "
                f'{before}→{st["NRestarts"]} after 8 s; journal: "{line}"'
            )

        self.attempt("a configuration error exits 78 with one line and is not restarted", body)

    def ready_offline(self) -> None:
        def body() -> tuple[bool, str]:
            self.box.exec(["systemctl", "stop", "voiced-check-live"])
            self.box.exec(["systemctl", "restart", "voiced"], timeout=90)  # returns at READY=1
            st = self.status_json()
            text = self.show("StatusText")["StatusText"]
            self.box.exec(["systemctl", "start", "voiced-check-live"])
            back = self.wait_idle(90)
            return st["state"] in ("connecting", "offline") and back["state"] == "idle", (
                f'Live server stopped: READY=1 anyway, state {st["state"]}, STATUS="{text}"; '
                "server back: idle again without a restart"
            )

        self.attempt("READY=1 also when offline; reconnects by itself", body)

    def device_policy(self) -> None:
        def body() -> tuple[bool, str]:
            show = self.show("DevicePolicy", "DeviceAllow")
            allow = [
                f"--property=DeviceAllow={a.strip()}"
                for a in re.findall(r"[^ ]+ r?w?m?", show["DeviceAllow"])
            ]
            probe = ["sh", "-c", "exec 3<>/dev/net/tun && echo opened"]
            free = self.box.exec(
                ["systemd-run", "--wait", "--pipe", "--quiet", *probe], check=False
            )
            fenced = self.box.exec(
                [
                    "systemd-run",
                    "--wait",
                    "--pipe",
                    "--quiet",
                    f"--property=DevicePolicy={show['DevicePolicy']}",
                    *allow,
                    *probe,
                ],
                check=False,
            )
            ok = (
                "opened" in free.stdout
                and "Operation not permitted" in fenced.stderr + fenced.stdout
            )
            return ok, (
                f"/dev/net/tun: without the unit's device settings "
                f"{'opened' if 'opened' in free.stdout else free.stderr.strip()!r}; with "
                f"DevicePolicy={show['DevicePolicy']} DeviceAllow={show['DeviceAllow']!r}: "
                f"{(fenced.stderr + fenced.stdout).strip()[:120]!r}"
            )

        self.attempt("device access limited to sound cards and GPIO (DevicePolicy= enforced)", body)

    def boot_start(self) -> None:
        def body() -> tuple[bool, str]:
            took = self.box.reboot()
            active = self.wait_for(
                "voiced active after boot",
                lambda: self.show("ActiveState")["ActiveState"] == "active",
                60,
            )
            st = self.wait_idle()
            return bool(active) and st["state"] == "idle", (
                f"rebooted the container ({took:.1f} s to running): voiced active and idle "
                "without being started by hand"
            )

        self.attempt("enabled: starts at boot", body)


# -- the run -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    lines: list[str] = []

    def say(text: str) -> None:
        lines.append(text)
        print(text, flush=True)

    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "mount"):
        if shutil.which(tool) is None:
            print(
                f"systemd-check: {tool} is missing (apt-get install systemd-container debootstrap)",
                file=sys.stderr,
            )
            return 2
    if os.geteuid() != 0:
        print("systemd-check: run as root (it boots a container)", file=sys.stderr)
        return 2
    started = time.monotonic()
    if not args.port:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            args.port = probe.getsockname()[1]
    cache = Path(args.cache)
    cold = not (cache / "bookworm/.voiced-check-ready").exists()
    try:
        lower = prepare_rootfs(cache, lambda m: print(f"… {m}", flush=True))
    except (CheckError, subprocess.TimeoutExpired) as exc:
        print(f"systemd-check: cannot make the rootfs: {exc}", file=sys.stderr)
        return 2
    runs = cache / "runs"
    runs.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=runs, prefix="run-"))
    box = Container(lower, workdir, f"voiced-check-{os.getpid()}", say)
    checks = Checks(box, say)
    try:
        box.mount()
        boot_s = box.boot()
        say(
            f"… systemd {box.exec(['systemctl', '--version']).stdout.split()[1]} is PID 1 in "
            f"{box.name} (up in {boot_s:.1f} s); rootfs {'made now' if cold else 'from the cache'}"
        )
        phase = time.time()
        if checks.install():
            checks.ready_and_status()
            checks.groups()
            checks.restart_continues(external=False)
            checks.reload_instruction()
            checks.crash_restart()
            checks.watchdog()
            # A separate Live server (as the real API is), a key as a credential, DEBUG logs:
            # the restart must resume the very same session, and the key never show.
            # Enabled, so that it is there again after the reboot below.
            box.write(
                "/etc/systemd/system/voiced-check-live.service",
                "[Unit]\nDescription=a Live server for the systemd check\n"
                "Before=voiced.service\n[Service]\nUser=nobody\n"
                f"ExecStart=/opt/voiced/bin/voiced live-server --port {args.port}\n"
                "[Install]\nWantedBy=multi-user.target\n",
            )
            box.exec(["systemctl", "daemon-reload"])
            box.exec(["systemctl", "enable", "--now", "voiced-check-live"])
            checks.settings.setdefault("live", {})["endpoint"] = f"ws://127.0.0.1:{args.port}"
            checks.settings.setdefault("service", {})["log_level"] = "DEBUG"
            checks.config()
            checks.credential()
            checks.restart_continues(external=True)
            checks.journal_fields(phase)
            checks.sandbox_clean(phase)
            checks.bad_config()
            checks.ready_offline()
            checks.device_policy()
            checks.boot_start()
            checks.stop_fast()
    except (CheckError, subprocess.TimeoutExpired) as exc:
        checks.claim("the check ran to the end", False, str(exc)[:800])
    finally:
        if args.keep:
            say(
                f"… kept {workdir} (container {box.name} "
                f"still running: nsenter --target {box.pid1})"
            )
        else:
            box.stop()
            box.unmount()
            shutil.rmtree(workdir, ignore_errors=True)
    failed = [r for r in checks.results if not r.ok]
    took = time.monotonic() - started
    summary = (
        f"{len(checks.results) - len(failed)} of {len(checks.results)} claims hold "
        f"({'cold: rootfs made now' if cold else 'rootfs cached'}, {took:.0f} s)"
    )
    say(("PASS" if not failed else "FAIL") + f": {summary}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "claims": [vars(r) for r in checks.results],
                    "figures": checks.figures,
                    "cold": cold,
                    "seconds": round(took, 1),
                    "passed": not failed,
                },
                indent=2,
            )
            + "\n"
        )
    if args.proving:
        write_proving(Path(args.proving), lines, checks, cold, took)
    return 1 if failed or not checks.results else 0


def write_proving(path: Path, lines: list[str], checks: Checks, cold: bool, took: float) -> None:
    """Our section of docs/proving.md, between our own markers (bench.report owns the rest)."""
    import platform

    body = [
        PROVING_START,
        "## The unit under a real systemd (`sudo bash tools/systemd-check.sh`)",
        "",
        f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({platform.machine()}, "
        f"{'cold: rootfs made by debootstrap' if cold else 'cached rootfs'}, {took:.0f} s): "
        "systemd 252 as PID 1 in systemd-nspawn, voiced installed by `tools/install.sh "
        "--no-key` with one drop-in adding `--hw sim`. Generated by the check; do not edit.",
        "",
        "| claim | result | detail |",
        "|---|---|---|",
    ]
    for r in checks.results:
        body.append(f"| {r.claim} | {'PASS' if r.ok else 'FAIL'} | {r.detail.replace('|', '/')} |")
    body += ["", PROVING_END]
    text = path.read_text() if path.exists() else ""
    if PROVING_START in text and PROVING_END in text:
        head, rest = text.split(PROVING_START, 1)
        tail = rest.split(PROVING_END, 1)[1]
        text = head + "\n".join(body) + tail
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(body) + "\n"
    path.write_text(text)
    readme = REPO / "README.md"
    if path.resolve() == (REPO / "docs/proving.md").resolve() and readme.exists():
        readme.write_text(_into_readme(readme.read_text(), text))


def _into_readme(readme: str, report: str) -> str:
    """The README's proving section made from docs/proving.md — bench.report.into_readme's
    rule (headings one level down, title dropped), repeated here because this script runs
    on the host's python3 before any venv (bench.report needs numpy)."""
    start, end = "<!-- proving:start -->", "<!-- proving:end -->"
    if start not in readme or end not in readme:
        return readme
    lines = report.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    body = "\n".join("#" + line if line.startswith("#") else line for line in lines).strip()
    head, rest = readme.split(start, 1)
    return f"{head}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cache", default=str(CACHE), help=f"rootfs and pip cache (default {CACHE})"
    )
    parser.add_argument("--keep", action="store_true", help="leave the container running")
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="port of the separate Live server (the container shares the host's "
        "network; default: a free one)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--proving",
        metavar="FILE",
        help="write the results into FILE's systemd-check section (docs/proving.md)",
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
