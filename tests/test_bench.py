"""`make bench` in its short mode: the benchmark runs end to end so it cannot rot (figures not asserted)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, require


@pytest.mark.one_database  # the short mode makes its own SQLite database whatever the suite runs on
def test_the_ingest_benchmark_runs_in_its_short_mode(tmp_path):
    require(shutil.which("wrk") is not None, "wrk is needed (apt-get install -y wrk; .ci/run installs it)")
    instance = ROOT / "instance"  # `make run`'s own state: the benchmark leaves it as it found it
    before = {p.name: p.stat().st_mtime_ns for p in instance.iterdir()} if instance.exists() else {}
    done = subprocess.run([sys.executable, "bench/ingest.py", "--short", "--label", f"test-{tmp_path.name}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| sqlite | verbatim, new learners |" in done.stdout
    assert "| sqlite+nginx | verbatim, new learners |" in done.stdout  # the production front, too
    assert "status_errors" not in done.stdout  # a non-2xx answer is a bug; timeouts are the machine's load
    assert ({p.name: p.stat().st_mtime_ns for p in instance.iterdir()} if instance.exists() else {}) == before
    written = done.stdout.rsplit("written to ", 1)[1].strip()
    (ROOT / written).unlink()
    (ROOT / written).with_suffix(".json").unlink()


def test_the_report_prints_when_a_case_completed_nothing():
    """On a loaded machine a short case may finish no beacon: its ratios are left blank, never divided by 0."""
    import argparse
    import importlib

    bench = importlib.import_module("bench.ingest")
    nothing = [bench.Result(case, "sqlite", 0, 2.0, 0.0, 0.0)
               for case in ("no-op", "verbatim, new learners", "anonymised, new learners")]
    args = argparse.Namespace(gunicorn_env={}, keepalive=False, wrk_threads=2, connections=8, duration=2.0,
                              rounds=1)
    text = bench.report(nothing, 0.05, 40.0, args, "now", 1.0, {"sqlite": [(0.0, 0.05)]}, [])
    assert "| sqlite | anonymised, new learners | 0 |" in text
    assert "not measured" in text
