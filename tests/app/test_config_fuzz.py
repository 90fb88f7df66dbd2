"""Fuzzing the config loader: whatever the file or the environment holds, the loader
returns a Config or raises ConfigError naming a key — never anything else.

(The server-message decoder is fuzzed in tests/core/test_wire.py.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.app import config
from daemon.errors import ConfigError

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Values TOML can hold (tomllib gives exactly these types).
scalars = (
    st.text(max_size=20)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.datetimes()
    | st.dates()
    | st.times()
)
toml_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def _known_keys() -> dict[str, list[str]]:
    out = {}
    for section, target in config.SECTIONS.items():
        cls = config._import(target)
        out[section] = [f.name for f in dataclasses.fields(cls)]
    return out


KNOWN = _known_keys()
# Sections with their real keys and arbitrary values: this reaches every _coerce branch,
# every CHECKS predicate and every settings class's __post_init__.
known_sections = st.sampled_from(sorted(KNOWN)).flatmap(
    lambda s: st.tuples(
        st.just(s), st.dictionaries(st.sampled_from(KNOWN[s]), toml_values, max_size=6)
    )
)
shaped = st.lists(known_sections, max_size=4).map(dict)
anything = st.dictionaries(st.text(max_size=10), toml_values, max_size=4)


def _parse_only_config_errors(data: Any, environ: dict[str, str] | None = None) -> None:
    try:
        cfg = config.parse(data, environ=environ or {})
    except ConfigError as exc:
        assert isinstance(exc.key, str) and str(exc).startswith("config "), exc
        return
    assert set(cfg.sections) == set(config.SECTIONS)
    config.to_toml(cfg)  # what `voiced config` prints must not crash either


@FUZZ
@given(shaped)
def test_known_keys_with_any_values_give_config_or_config_error(data: dict) -> None:
    _parse_only_config_errors(data)


@FUZZ
@given(anything)
def test_any_toml_shaped_dict_gives_config_or_config_error(data: dict) -> None:
    _parse_only_config_errors(data)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(config.ENV_OVERRIDES)), st.text(max_size=30)))
def test_any_environment_overrides_give_config_or_config_error(environ: dict) -> None:
    _parse_only_config_errors({}, {k: v for k, v in environ.items() if "\x00" not in v})


def _toml_text(data: dict) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_lit(value)}")
    return "\n".join(lines) + "\n"


def _lit(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(v), repr(v))
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f'"{k}" = {_lit(x)}' for k, x in v.items()) + "}"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _load_only_config_errors(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "voiced.toml"
        path.write_bytes(raw)
        try:
            config.load(path, environ={})
        except ConfigError as exc:
            assert isinstance(exc.key, str) and str(exc).startswith("config "), exc


@FUZZ
@given(st.binary(max_size=300))
def test_raw_bytes_as_the_config_file_give_only_config_error(raw: bytes) -> None:
    _load_only_config_errors(raw)


@FUZZ
@given(st.text(max_size=300))
def test_raw_text_as_the_config_file_gives_only_config_error(text: str) -> None:
    _load_only_config_errors(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(shaped)
def test_toml_written_from_shaped_dicts_gives_only_config_error(data: dict) -> None:
    _load_only_config_errors(_toml_text(data).encode("utf-8", "surrogatepass"))


def test_a_binary_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "voiced.toml"
    path.write_bytes(b"\xff\xfe[live]\n")
    try:
        config.load(path, environ={})
    except ConfigError as exc:
        assert exc.key == str(path)
    else:
        raise AssertionError("a non-UTF-8 file was accepted")
