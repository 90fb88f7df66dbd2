"""Edges the decoder fuzz in tests/core/test_wire.py leaves out: NaN/Infinity tokens (Python's
json accepts them), numbers beyond int64 and float range, durations and rates that
overflow, deep nesting. Each decodes or raises ProtocolError — nothing else."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon import wire
from daemon.errors import ProtocolError

_numbers = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.sampled_from(["1e400", "-1e400", "NaN", "12345678901234567890123", "-0", "0x10"])
)
_keys = st.sampled_from(
    [
        "usageMetadata",
        "totalTokenCount",
        "promptTokenCount",
        "goAway",
        "timeLeft",
        "serverContent",
        "modelTurn",
        "parts",
        "inlineData",
        "data",
        "mimeType",
        "sessionResumptionUpdate",
        "newHandle",
        "resumable",
        "turnComplete",
        "outputTranscription",
        "text",
        "toolCall",
    ]
)
_values = st.recursive(
    _numbers | st.booleans() | st.none() | st.text(max_size=12),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_keys, kids, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_keys, _values, min_size=1, max_size=3))
def test_non_finite_and_huge_numbers_decode_or_raise_protocol_error(message: dict) -> None:
    try:
        events = wire.decode_server_message(json.dumps(message))  # emits NaN / Infinity
    except ProtocolError:
        return
    assert all(isinstance(e, wire.ServerEvent) for e in events)


@pytest.mark.parametrize(
    "frame",
    [
        '{"usageMetadata": {"totalTokenCount": Infinity}}',
        '{"usageMetadata": {"totalTokenCount": 1e400}}',
        '{"goAway": {"timeLeft": "1e400s"}}',
        '{"goAway": {"timeLeft": NaN}}',
        '{"serverContent": {"modelTurn": {"parts": [{"inlineData": {"data": "AAAA", '
        '"mimeType": "audio/pcm;rate=99999999999999999999999"}}]}}}',
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 50_000 + "1" + "}" * 50_000,
    ],
)
def test_overflowing_and_deeply_nested_frames_are_protocol_errors(frame: str) -> None:
    with pytest.raises(ProtocolError):
        wire.decode_server_message(frame)
