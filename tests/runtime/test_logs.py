"""Logging: redaction of secrets, structured journal fields, stderr format, journal detection."""

from __future__ import annotations

import io
import logging
import os
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from daemon.runtime.logs import (
    REDACTED,
    Redactor,
    StderrFormatter,
    StructuredJournalHandler,
    setup_logging,
    stderr_is_journal,
    use_journal,
)

KEY = "AIzaSyD-test-Key_0123456789abcdefghijklm"
REPO = Path(__file__).resolve().parents[2]


def _logger_to(handler: logging.Handler, name: str = "voiced.test") -> logging.Logger:
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


def test_redactor_removes_key_from_message_args_exception_stack_and_extras():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(StderrFormatter())
    handler.addFilter(Redactor([KEY]))
    log = _logger_to(handler)

    log.info("connect %s?key=%s", "wss://host/ws", KEY)
    log.info(f"f-string with {KEY}")
    log.debug("> %r", {"setup": {"apiKey": KEY}})
    log.warning(
        "bytes %s",
        KEY.encode(),
        extra={
            "REASON": f"API key {KEY} invalid",
            "CLOSE_CODE": 1007,
            "SESSION_ID": ValueError(KEY),
        },
    )
    try:
        raise ConnectionError(f"401 for {KEY}")
    except ConnectionError:
        log.exception("failed", stack_info=True)
    text = stream.getvalue()
    assert KEY not in text
    assert text.count(REDACTED) >= 7
    assert "close_code=1007" in text and "reason=API key [redacted] invalid" in text
    assert "ConnectionError: 401 for [redacted]" in text
    assert "Stack (most recent call last)" in text


def test_redactor_can_change_secrets_and_ignores_empty():
    redactor = Redactor(["", "old-secret-value"])
    assert redactor.redact("x old-secret-value y") == f"x {REDACTED} y"
    redactor.set_secrets([KEY, KEY[:12]])  # overlapping: the longest goes first
    assert redactor.redact(f"a{KEY}b {KEY[:12]}") == f"a{REDACTED}b {REDACTED}"
    assert redactor.redact("old-secret-value") == "old-secret-value"


def test_redactor_keeps_a_record_with_a_broken_format_string():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(Redactor([KEY]))
    _logger_to(handler).info("two %s %s", KEY)  # missing argument
    assert KEY not in stream.getvalue() and "two" in stream.getvalue()


def test_structured_journal_handler_sends_clean_fields():
    sent: list[tuple[str, dict[str, object]]] = []
    handler = StructuredJournalHandler("voiced", sender=lambda m, **f: sent.append((m, f)))
    handler.addFilter(Redactor([KEY]))
    log = _logger_to(handler)
    log.info("= state %s", "listening", extra={"STATE": "listening", "SESSION_ID": "s-1"})
    log.warning(
        "x closed",
        extra={
            "CLOSE_CODE": 1011,
            "REASON": "Deadline expired",
            "lowercase": "dropped",
            "_TRUSTED": "dropped",
        },
    )
    (m1, f1), (m2, f2) = sent
    assert m1 == "= state listening"
    assert f1["STATE"] == "listening" and f1["SESSION_ID"] == "s-1"
    assert f1["PRIORITY"] == "6" and f1["SYSLOG_IDENTIFIER"] == "voiced"
    assert f1["LOGGER"] == "voiced.test"
    assert f1["CODE_FUNC"] == "test_structured_journal_handler_sends_clean_fields"
    assert (f2["CLOSE_CODE"], f2["REASON"], f2["PRIORITY"]) == (1011, "Deadline expired", "4")
    for fields in (f1, f2):
        assert not {"lowercase", "_TRUSTED", "MSG", "ARGS", "EXC_INFO", "CODE_ARGS"} & set(fields)


def _parse_native(datagram: bytes) -> dict[str, str]:
    """journald's native protocol: KEY=value\\n, or KEY\\n<le64 size><data>\\n."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(datagram):
        nl = datagram.index(b"\n", i)
        line = datagram[i:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            i = nl + 1
        else:
            key = line
            (size,) = struct.unpack("<Q", datagram[nl + 1 : nl + 9])
            value = datagram[nl + 9 : nl + 9 + size]
            i = nl + 9 + size + 1
        fields[key.decode()] = value.decode("utf-8", "replace")
    return fields


JOURNAL_CHILD = f"""
import logging, sys
from daemon.runtime.logs import setup_logging
setup_logging(logging.INFO, secrets=[{KEY!r}])
log = logging.getLogger("daemon.session")
log.info("= state %s", "idle", extra={{"STATE": "idle", "SESSION_ID": "abc"}})
try:
    raise RuntimeError("bad key {KEY}")
except RuntimeError:
    log.exception("x closed %s", 1007, extra={{"CLOSE_CODE": 1007, "REASON": "key {KEY}"}})
"""


def test_journal_receives_structured_fields_over_the_real_socket(tmp_path: Path):
    """The child's stderr is "the journal" (JOURNAL_STREAM = its dev:ino), so
    setup_logging picks the journal; systemd-python's real send() writes to
    /run/systemd/journal/socket, which a private mount namespace points at our
    socket."""
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(journal_dir / "socket"))
    sock.settimeout(10)
    stderr_file = tmp_path / "stderr"
    with open(stderr_file, "w") as err:
        st = os.fstat(err.fileno())
        env = {**os.environ, "PYTHONPATH": str(REPO), "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        script = (
            "mount -t tmpfs tmpfs /run/systemd 2>/dev/null || mount -t tmpfs tmpfs /run; "
            "mkdir -p /run/systemd/journal && "
            f"mount --bind {journal_dir} /run/systemd/journal && "
            f'exec {sys.executable} -c "$0"'
        )
        result = subprocess.run(
            ["unshare", "--mount", "sh", "-c", script, JOURNAL_CHILD],
            stderr=err,
            env=env,
            timeout=30,
        )
    if result.returncode != 0:
        pytest.fail(
            "could not run the child in a private mount namespace (needs root and "
            f"unshare): {stderr_file.read_text()}"
        )
    entries = [_parse_native(sock.recv(65536)) for _ in range(2)]
    sock.close()
    first, second = entries
    assert first["MESSAGE"] == "= state idle"
    assert (first["STATE"], first["SESSION_ID"], first["PRIORITY"]) == ("idle", "abc", "6")
    assert first["SYSLOG_IDENTIFIER"] == "voiced"
    assert second["CLOSE_CODE"] == "1007" and second["PRIORITY"] == "3"
    assert "RuntimeError: bad key [redacted]" in second["EXCEPTION_TEXT"]
    assert second["MESSAGE"].startswith("x closed 1007\nTraceback")
    raw = "".join(str(e) for e in entries) + stderr_file.read_text()
    assert KEY not in raw
    assert stderr_file.read_text() == ""  # everything went to the journal


def test_stderr_is_journal_matches_dev_and_inode(tmp_path: Path):
    with open(tmp_path / "a", "w") as a, open(tmp_path / "b", "w") as b:
        st = os.fstat(a.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(env, a) is True
        assert stderr_is_journal(env, b) is False
        assert stderr_is_journal({"JOURNAL_STREAM": "garbage"}, a) is False
        assert stderr_is_journal({}, a) is False
        assert stderr_is_journal(env, io.StringIO()) is False  # no fileno
        assert use_journal(env, a) is True
        assert use_journal({"INVOCATION_ID": "x"}, b) is True  # systemd, stderr elsewhere
        assert use_journal({"INVOCATION_ID": "x", "JOURNAL_STREAM": "1:2"}, b) is False
        assert use_journal({}, b) is False


def test_setup_logging_to_stderr_is_readable_and_redacted():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    hooks = (sys.excepthook, threading.excepthook)
    try:
        redactor = setup_logging(logging.INFO, secrets=[KEY], environ={}, stream=stream)
        log = logging.getLogger("daemon.runtime.connection")
        log.info("x closed %s %s", 1000, "bye", extra={"CLOSE_CODE": 1000})
        log.debug("< wire frame (hidden at INFO)")
        redactor.set_secrets(["new-key-after-reload"])
        log.info("using new-key-after-reload")
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        sys.excepthook, threading.excepthook = hooks
        logging.captureWarnings(False)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("INFO daemon.runtime.connection: x closed 1000 bye [close_code=1000]")
    assert lines[1].endswith(f"using {REDACTED}")


CRASH_CHILD = f"""
import logging, threading
from daemon.runtime.logs import setup_logging
setup_logging(logging.INFO, secrets=[{KEY!r}], journal=False)
def callback():
    raise PermissionError("401 for key {KEY}")
t = threading.Thread(target=callback, name="pyaudio-callback")
t.start(); t.join()
raise RuntimeError("setup rejected key={KEY}")
"""


def test_uncaught_exceptions_go_through_the_redactor():
    result = subprocess.run(
        [sys.executable, "-c", CRASH_CHILD],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=30,
    )
    assert result.returncode == 1
    assert KEY not in result.stderr
    assert (
        "CRITICAL voiced.crash: uncaught PermissionError in thread pyaudio-callback"
        in result.stderr
    )
    assert "PermissionError: 401 for key [redacted]" in result.stderr
    assert "RuntimeError: setup rejected key=[redacted]" in result.stderr


def test_redaction_cost():
    """Benchmark: what the redactor adds to one INFO record with structured fields."""
    import time

    def run(with_filter: bool) -> float:
        handler = logging.StreamHandler(io.StringIO())
        handler.setFormatter(StderrFormatter())
        if with_filter:
            handler.addFilter(Redactor([KEY]))
        log = _logger_to(handler, "voiced.bench")
        t0 = time.perf_counter()
        for i in range(5000):
            log.info("= state %s turn %d", "listening", i, extra={"STATE": "listening"})
        return (time.perf_counter() - t0) / 5000

    plain, redacted = run(False), run(True)
    print(f"log record: {plain * 1e6:.1f} µs plain, {redacted * 1e6:.1f} µs with redaction")
    assert redacted > 0
