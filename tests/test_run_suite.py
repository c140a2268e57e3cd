"""`make test`'s runner fails a pass that leaves a process or a test database behind, and removes them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid

import pytest
from conftest import ROOT, _postgres_url


def test_a_pass_that_leaves_a_process_and_a_database_fails(tmp_path, database_kind):
    if database_kind != "postgresql":
        pytest.skip("the check runs both leftovers at once, in the PostgreSQL pass")
    # This run's own mark: another suite running at the same time (the README's load check) plants its own.
    mark = f"leak-{uuid.uuid4().hex}"
    leaky = tmp_path / "test_leaky.py"
    leaky.write_text(textwrap.dedent('''
        import os, subprocess, sys
        import psycopg

        def test_leaks():
            # a server left running, the way an orphaned gunicorn worker outlived the suite
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # MARK"], start_new_session=True)
            url = os.environ["TEST_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "tracker_test_{os.environ["TEST_RUN_TAG"]}_leak"')
    ''').replace("MARK", mark))
    env = {**os.environ, "TEST_WORKERS": "0", "TEST_DATABASE_URL": _postgres_url()}
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "run_suite.py"), str(leaky), "-p",
                           "no:cacheprovider"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    # Both passes: the SQLite one and the PostgreSQL one each report their orphan.
    assert out.count("process(es) the suite started outlived it") == 2, out[-3000:]
    assert "time.sleep(600)" in out
    assert "left 1 test database(s) behind (now dropped): tracker_test_" in out
    assert subprocess.run(["pgrep", "-f", mark], capture_output=True).returncode == 1
