"""The unit under a real systemd: tools/systemd_check.py boots Debian 12 with systemd as
PID 1 in systemd-nspawn, installs voiced with tools/install.sh and checks every service
claim of the README (one PASS/FAIL line each). It needs root, systemd-container and
debootstrap — tools/bootstrap.sh's test list installs them — and the Debian and PyPI
registries (the rootfs is made once and cached in /var/cache/voiced-systemd-check: about
4 minutes cold; then ~3 minutes a run). The check is started in the background as soon as the
run's tests are collected (tests/conftest.py), so those minutes overlap the rest of the suite."""

from __future__ import annotations

import json
from typing import Any

import pytest


@pytest.mark.timeout(3600)
def test_every_service_claim_of_the_readme_holds_under_a_real_systemd(
    background_systemd_check: Any,
) -> None:
    # Started at collection (tests/conftest.py): it runs beside the rest of the suite.
    code, stdout, stderr = background_systemd_check.result(timeout=3500)
    print(stdout)
    assert code == 0, stdout[-6000:] + stderr[-3000:]
    report = background_systemd_check.report
    result = json.loads(report.read_text())
    claims = {c["claim"]: c["ok"] for c in result["claims"]}
    # Every claim of README "The service" and "Command line" about the unit is checked.
    for words in (
        "READY=1",
        "group voiced reaches",
        "exit 4",
        "embedded server",
        "same Live session",
        "reload",
        "watchdog",
        "crash",
        "API key",
        "journal fields",
        "sandboxed",
        "exits 78",
        "starts at boot",
        "SIGTERM",
    ):
        assert any(words in claim for claim in claims), f"no claim about {words!r}: {claims}"
    assert all(claims.values()) and result["passed"]
