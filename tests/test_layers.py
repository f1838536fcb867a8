"""CONTRIBUTING's import rules are import-linter contracts (pyproject.toml), run by ``make lint``: each fails on a
wrong arrow. One run of ``lint-imports`` on a copy of the tree with one wrong import added per rule (~2 s)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

#: (package a module is added to, what that module imports, the contract that must catch it)
WRONG_ARROWS = [
    ("relay.core", "relay.config.settings", "layers"),  # core takes policy records, never Settings
    ("relay.config", "relay.core.hosts", "layers"),  # the ground floor's two halves import neither the other
    ("relay.config", "relay.store.keys", "layers"),  # configuration imports no layer above it
    ("relay.credentials", "relay.outbound.ssrf", "layers"),  # siblings import neither the other
    ("relay.store", "relay.api.app", "layers"),
    ("relay.api", "workers.main", "layers"),  # relay never imports workers (but for the cli)
    ("workers", "relay.cli.main", "layers"),  # the composition root is imported by no one
    ("relay.outbound", "relay.config.settings", "outbound-values"),
    ("relay.core", "aiohttp.web", "core-pure"),
    ("relay.core", "redis", "core-pure"),
    ("relay.simulator", "relay.core.schema", "simulator-apart"),
    ("relay.api", "relay.simulator", "product-without-simulator"),
]


def _contract_names() -> dict[str, str]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return {contract["id"]: contract["name"] for contract in config["contracts"]}


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [LINT_IMPORTS, str(PYPROJECT), "--no-cache", "--no-logo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _not_python(src: str, names: list[str]) -> list[str]:
    """What the copy leaves out: everything but packages and Python files."""
    return [n for n in names if n == "__pycache__" or (not n.endswith(".py") and not (Path(src) / n).is_dir())]


def _broken(report: str, names: dict[str, str]) -> dict[str, str]:
    """The 'Broken contracts' part of lint-imports' report, one text per contract id."""
    broken = report.split("Broken contracts", 1)[-1]
    heads = sorted((broken.find(f"\n{name}\n"), cid) for cid, name in names.items() if f"\n{name}\n" in broken)
    ends = [start for start, _ in heads[1:]] + [len(broken)]
    return {cid: broken[start:end] for (start, cid), end in zip(heads, ends, strict=True)}


def _reported(section: str, module: str, target: str) -> bool:
    """The report names the import itself: ``- relay.core._wrong_0 -> relay.config.settings (l.1)``."""
    return re.search(rf"^-\s+{re.escape(module)} -> {re.escape(target)} \(l\.1\)$", section, re.MULTILINE) is not None


def test_every_wrong_arrow_fails_lint_imports_under_its_contract(tmp_path: Path) -> None:
    for package in ("relay", "workers"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=_not_python)
    added: list[tuple[str, str, str]] = []
    for n, (package, target, contract) in enumerate(WRONG_ARROWS):
        module = f"{package}._wrong_{n}"
        (tmp_path / Path(*module.split("."))).with_suffix(".py").write_text(f"import {target}\n")
        # a third-party package is reported by its top-level name
        added.append((module, target if target.startswith(("relay.", "workers.")) else target.split(".")[0], contract))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    found = subprocess.run(  # the copy is what is linted, not the tree the venv points at
        [sys.executable, "-c", "import relay; print(relay.__file__)"], cwd=tmp_path, env=env, capture_output=True
    )
    assert found.stdout.decode().startswith(str(tmp_path)), found.stdout
    done = _lint_imports(tmp_path, env)
    assert done.returncode == 1, done.stdout + done.stderr
    sections = _broken(done.stdout, _contract_names())
    missed = [f"{m} -> {t} ({c})" for m, t, c in added if not _reported(sections.get(c, ""), m, t)]
    assert not missed, f"wrong arrows no contract reported: {missed}"


def test_make_lint_runs_the_contracts() -> None:
    """``make lint`` (and so CI, ``.ci/run``) runs lint-imports on the tree; the test above shows each rule fails."""
    assert re.search(r"^lint:.*\n(\t.*\n)*\t\$\(BIN\)/lint-imports\b", (ROOT / "Makefile").read_text(), re.MULTILINE)
