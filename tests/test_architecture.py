"""The house without circles: import-linter's contracts in pyproject.toml (``[tool.importlinter]``) hold.

Data flows one way: the domains (identity, clients, learners and staff, licensing, outbound, ingest
and packages, content, billing) each import only the domains below them, the staff console and the
commands sit on top, and every domain builds on the core models and the basics; no two modules (or
packages) of a package import each other, even from inside a function; a blueprint's package never
imports its own views. ``lint-imports`` checks it; the
second test proves the contracts are not blind, on a copy of ``app/`` with circles put back.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.one_database

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = {
    "layers": "The domains in one direction: each imports only the domains below it",
    "acyclic": "No import circles between the modules or packages of any package of app",
    "views": "A blueprint's or domain's package never imports its own faces",
}


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    command = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(command), "--no-cache", "--no-logo"], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout, result.stdout


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def test_the_contracts_fail_when_a_circle_or_an_upward_import_comes_back(tmp_path):
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("static", "templates", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    assert lint_imports(tmp_path).returncode == 0, "the copy starts clean"

    # A circle inside a domain, through an import inside a function (the kind that hid before).
    _append(tmp_path / "app/licensing/periods.py", "\n\ndef _seats():\n    from app.licensing import licences  # noqa\n")
    # The core models importing a domain built on them, and ingest importing billing, above it.
    _append(tmp_path / "app/models.py", "\n\nfrom app.licensing.models import LicenceTerm  # noqa\n")
    _append(tmp_path / "app/ingest/batch.py", "\n\nfrom app.billing import figures  # noqa\n")
    # The admin package importing its own view.
    _append(tmp_path / "app/admin/__init__.py", "\n\nfrom app.admin import clients  # noqa\n")

    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 3 broken" in result.stdout, result.stdout
    report = " ".join(result.stdout.split())
    assert "app.models is not allowed to import app.licensing" in report
    assert "app.ingest is not allowed to import app.billing" in report
    assert "No cycles are allowed in app.licensing" in report
    assert "app.admin is not allowed to import app.admin.clients" in report
    for name in CONTRACTS.values():
        assert f"{name}" in report
