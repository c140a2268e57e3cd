"""`make test` runs each `one_database` test in exactly one of its two passes: the real-course files in
the PostgreSQL pass, the others in the SQLite pass (tests/conftest.py). A test skipped in both would be
a silent gap; one run in both, wasted time. Checked through pytest itself, on real test files."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from conftest import ROOT, _postgres_url

pytestmark = pytest.mark.one_database

# One moved file (ONE_DATABASE_IN_POSTGRESQL_PASS), one one_database file that is not, one run in both.
FILES = ["tests/test_false_records.py", "tests/test_architecture.py", "tests/test_periods.py"]
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def planned(tmp_path, name: str, **env) -> dict[str, bool]:
    """Each test's node ID and whether the pass would run it (pytest's --setup-plan: no test runs)."""
    report = tmp_path / f"{name}.xml"
    base = {k: v for k, v in os.environ.items()
            if k not in ("TEST_DATABASE_URL", "TEST_BOTH_PASSES", "TEST_ONE_DATABASE_ON_POSTGRESQL")}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           "--setup-plan", f"--junitxml={report}", *FILES], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {f"{case.get('classname')}::{case.get('name')}": case.find("skipped") is None
            for case in ET.parse(report).getroot().iter("testcase")}


def test_each_one_database_test_runs_in_exactly_one_pass_of_make_test(tmp_path):
    sqlite = planned(tmp_path, "sqlite", TEST_BOTH_PASSES="1")
    postgres = planned(tmp_path, "postgres", TEST_BOTH_PASSES="1", TEST_DATABASE_URL=_postgres_url() or POSTGRES)
    assert sqlite.keys() == postgres.keys() and len(sqlite) > 30
    for test, runs in sqlite.items():
        if "test_periods" in test:
            assert runs and postgres[test], test  # depends on the database: both passes
        else:
            assert runs != postgres[test], test  # one_database: exactly one pass
            assert postgres[test] == ("test_false_records" in test), test
    # A pass on its own (plain pytest on SQLite) runs every test: nothing is left to a pass that is not there.
    assert all(planned(tmp_path, "alone").values())
