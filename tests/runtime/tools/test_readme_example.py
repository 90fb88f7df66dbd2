"""The README's "Tools" and "Home Assistant" examples are one complete configuration: put
together, they load through the configuration loader exactly as written (a README that
drifts from the code is caught here)."""

from __future__ import annotations

import re
from pathlib import Path

from daemon.app import config
from daemon.runtime.tools import declarations

README = Path(__file__).resolve().parents[3] / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def toml_blocks(text: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", text, flags=re.S)


def test_the_readme_tools_and_home_assistant_examples_load(tmp_path: Path) -> None:
    blocks = toml_blocks(section("Tools")) + toml_blocks(section("Home Assistant"))
    assert len(blocks) == 2, "one example in each section"
    path = tmp_path / "voiced.toml"
    path.write_text("\n".join(blocks))
    cfg = config.load(path, environ={})
    names = [t.name for t in cfg.tools]
    assert names == ["porch_light", "garage_door", "scene", "fan", "set_volume", "set_timer"]
    kinds = [t.action.kind for t in cfg.tools]
    assert kinds == ["gpio", "command", "http", "mqtt", "builtin", "builtin"], kinds
    assert cfg.mqtt.enabled and cfg.mqtt.topic_prefix == "voiced/kitchen"
    decls = declarations(cfg.tools, cfg.live.model)
    assert all(d["behavior"] == "NON_BLOCKING" for d in decls)  # gemini-3.8-live, the default
    assert dict(cfg.session.tool_scheduling) == {n: "INTERRUPT" for n in names}
