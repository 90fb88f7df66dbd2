"""The fault matrix's tool and MQTT rows (bench/toolfaults.py), with what each must show
beyond surviving (tests/proving/test_faults.py asserts the common part for every row).

Server and daemon share one event loop here, a :class:`tests.timing.ProgressLoop`: the
core's guards (15 s setup, 30 s reply, a goAway's 30 s) are nominal seconds at the rows'
time scale, and on a busy machine they measure the scenario's progress, not how long the
loop waited for a CPU."""

from __future__ import annotations

import pytest

from bench.faults import FAULTS, run_fault
from tests.timing import ProgressLoop


@pytest.mark.parametrize(
    "name", ["tool_hangs", "tool_cancelled", "tool_across_goaway", "broker_down_and_back"]
)
def test_tool_fault_row(name: str) -> None:
    assert name in FAULTS
    r = run_fault(name, loop_factory=ProgressLoop)
    print(r)
    assert r.outcome == "recovered" and r.answered == 1 and r.frames_lost == 0, r
    assert r.led == "idle", r
    x = r.extra
    if name == "tool_hangs":
        assert x["timeouts"] == 1 and x["spoken_timeout"] == 1, r  # answered, and said
    elif name == "tool_cancelled":
        assert x["cancelled"] == 1 and x["late_results"] == 0, r  # no result for a cancelled id
        assert x["first_turn_interrupted"] == 1, r
    elif name == "tool_across_goaway":
        assert x["goaway_while_running"] == 1 and x["spoken_results"] == 1, r
        assert r.retries == 0 and r.connections <= 1, r  # a switch, not a failure
    else:
        assert x["mqtt_connects"] == 2 and r.retries == 0 and r.connections == 0, r
