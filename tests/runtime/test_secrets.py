"""A run with a known key: grep everything it produced — logs, STATUS and the other
notify messages, its environment, its argv — for any trace of the key."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

KEY = "AIzaSyC-known-test-key_9876543210ZYXWVUT"


def test_known_key_never_appears_in_logs_status_env_or_argv(
    tmp_path: Path, notify_listener, spawn_child
):
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "api-key").write_text(KEY + "\n")
    os.chmod(creds / "api-key", 0o400)
    child = spawn_child(
        env={
            "NOTIFY_SOCKET": notify_listener.address,
            "WATCHDOG_USEC": "200000",
            "CREDENTIALS_DIRECTORY": str(creds),
        }
    )
    ready_at = notify_listener.wait_for("READY=1")
    child.send("leak")  # logs the key every way a careless caller could, sets STATUS
    notify_listener.wait_for("STATUS=error; last error: 1007 key [redacted]", after=ready_at)
    hup_at = time.monotonic()
    os.kill(child.proc.pid, signal.SIGHUP)  # reload re-reads the key
    notify_listener.wait_for("STATUS=reloaded", after=hup_at)
    child.send("leak")
    time.sleep(0.3)
    os.kill(child.proc.pid, signal.SIGTERM)
    rc, out, err = child.finish()
    assert rc == 0, err

    notify = "\n".join(m for _, m in notify_listener.snapshot())
    cmdline = Path(f"/proc/{os.getpid()}/cmdline").read_bytes().decode(errors="replace")
    everything = "\n".join([out, err, notify, cmdline])
    # The run really exercised the paths that could leak:
    assert err.count("the key is [redacted]") == 2
    assert "RuntimeError: connect failed for key=[redacted]" in err
    assert 'setup {"key": "[redacted]"}' in err
    assert "env:" in out and "argv:" in out
    assert KEY not in everything
    assert KEY[5:25] not in everything  # no fragment either
