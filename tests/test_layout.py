"""The layout is the architecture (README "How it works"): every module imports, and no
import runs back up — the pure core imports nothing from the shell, the composition root
or the CLI, and ``hw/`` imports nothing from the network side."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The pure core: daemon's own modules at the package root (no I/O, time comes in as `now`).
CORE = (
    "daemon.wire",
    "daemon.session",
    "daemon.session_state",
    "daemon.session_connections",
    "daemon.session_failures",
    "daemon.session_asks",
    "daemon.session_tools",
    "daemon.session_capture",
    "daemon.session_controls",
    "daemon.turns",
    "daemon.vocabulary",
    "daemon.context",
    "daemon.backoff",
    "daemon.events",
    "daemon.errors",
    "daemon.health",
)
CORE_MAY_NOT = (
    "daemon.runtime",
    "daemon.app",
    "daemon.cli",
    "daemon.liveserver",
    "hw",
    "testing",
    "bench",
    "asyncio",
    "websockets",
)
HW_MAY_NOT = (
    "daemon.runtime",
    "daemon.app",
    "daemon.cli",
    "daemon.liveserver",
    "websockets",
    "aiomqtt",
    "testing",
    "bench",
)
RUNTIME_MAY_NOT = ("daemon.app", "daemon.cli", "testing", "bench")
LIVESERVER_MAY_NOT = ("daemon.runtime", "daemon.app", "daemon.cli", "hw", "testing", "bench")
# The installed packages never import what is not installed.
INSTALLED_MAY_NOT = ("testing", "bench", "tests")


def modules(package: str) -> list[str]:
    """Every module of ``package`` (found on disk, not imported)."""
    path = ROOT / package.replace(".", "/")
    found = [package]
    for info in pkgutil.walk_packages([str(path)], package + "."):
        found.append(info.name)
    return sorted(found)


def source(module: str) -> Path:
    path = ROOT / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def imports(module: str) -> set[str]:
    """The absolute names ``module`` imports anywhere in its file (lazy imports included)."""
    tree = ast.parse(source(module).read_text(), str(source(module)))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = module.split(".")
                if not source(module).name == "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


def offending(module: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        name
        for name in imports(module)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    )


ALL = modules("daemon") + modules("hw") + modules("testing")


def test_every_module_imports() -> None:
    # One fresh interpreter, as `python -c` would: nothing this test process imported helps.
    code = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {[m for m in ALL if not m.endswith('__main__')]!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(ALL) > 60  # the walk found the tree, not an empty folder


def test_the_core_is_the_package_root() -> None:
    root = {m for m in modules("daemon") if m.count(".") == 1 and not m.endswith("__main__")}
    packages = {"daemon.runtime", "daemon.app", "daemon.cli", "daemon.liveserver"}
    assert root - packages == set(CORE)


@pytest.mark.parametrize("module", CORE)
def test_the_core_imports_nothing_from_the_shell(module: str) -> None:
    assert offending(module, CORE_MAY_NOT) == []


@pytest.mark.parametrize("module", modules("hw"))
def test_hw_imports_nothing_from_the_network_side(module: str) -> None:
    assert offending(module, HW_MAY_NOT) == []


@pytest.mark.parametrize("module", modules("daemon.runtime"))
def test_the_runtime_does_not_import_its_composition_root(module: str) -> None:
    assert offending(module, RUNTIME_MAY_NOT) == []


@pytest.mark.parametrize("module", modules("daemon.liveserver"))
def test_the_live_server_imports_nothing_of_the_device(module: str) -> None:
    assert offending(module, LIVESERVER_MAY_NOT) == []


@pytest.mark.parametrize("module", modules("daemon") + modules("hw"))
def test_installed_code_imports_no_test_rig(module: str) -> None:
    assert offending(module, INSTALLED_MAY_NOT) == []


def test_the_rule_finds_a_violation(tmp_path: Path) -> None:
    # The scan itself: a core-like file importing the shell lazily is caught.
    bad = ast.parse("def f():\n    from daemon.runtime.supervisor import Supervisor\n")
    names = {
        f"{n.module}.{a.name}"
        for n in ast.walk(bad)
        if isinstance(n, ast.ImportFrom)
        for a in n.names
    }
    assert any(name.startswith("daemon.runtime") for name in names)
    assert offending("daemon.session", ("daemon.wire",)) == ["daemon.wire"]


def test_no_test_module_imports_another() -> None:
    # Shared helpers live in conftest.py or harness.py files (and tests/timing.py,
    # tests/notify.py), never in a test_*.py another test imports.
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.split(".")[-1].startswith("test_"):
                    found.append(f"{path.relative_to(ROOT)}: from {node.module}")
    assert found == [], "\n".join(found)
