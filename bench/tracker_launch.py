"""What the tracker costs a launch: its size, and the time it adds before the course has loaded.

    .venv/bin/python bench/tracker_launch.py [runs]

Builds the same placeholder course twice (tracked, and untracked as for a
perpetual licence), serves each from a local static server inside a test LMS
page running scorm-again (tests/browser/, `make test-install` first), opens it
`runs` times in Debian's Chromium, and compares the content frame's load time
(navigation start to the end of its load event). The beacon goes to an address
where nothing listens: sending is asynchronous, so only what the tracker does
on the page's critical path is measured.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import shutil
import statistics
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import create_app, packages  # noqa: E402
from app.clients import services as clients  # noqa: E402
from app.extensions import db  # noqa: E402
from app.identity.student_ids import PseudonymParams  # noqa: E402

NODE = ROOT / "tests" / "browser" / "node_modules" / "scorm-again" / "dist"
LMS = ROOT / "tests" / "browser" / "lms"


def build_both(workdir: Path) -> dict[str, bytes]:
    from flask_migrate import upgrade

    url = f"sqlite:///{workdir / 'bench.db'}"
    app = create_app({"ENV": {"APP_ENV": "test", "DATABASE_URL": url, "SECRET_KEY": "x" * 32,
                              "PSEUDONYM_SECRET": "y" * 32}})
    params = PseudonymParams(1, 256, 1)
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        out = {}
        for licence in ("subscription", "perpetual"):
            client, _ = clients.create_client(db.session, name=f"Bench {licence}", actor="bench",
                                              licence=licence, params=params)
            out[licence], _ = packages.package_bytes(
                db.session, client=client, course_title="Anti-Bribery", scorm_version="1.2",
                server_url="https://127.0.0.1:9", issued_by="bench")
        db.engine.dispose()
    return out


def main(runs: int = 30) -> None:
    from playwright.sync_api import sync_playwright

    workdir = Path(tempfile.mkdtemp(prefix="tracker-bench-"))
    built = build_both(workdir)
    tracker = zipfile.ZipFile(io.BytesIO(built["subscription"])).read(packages.TRACKER_FILE)
    print(f"tracker: {len(tracker)} bytes, {len(gzip.compress(tracker, 9))} bytes gzipped")

    root = workdir / "www"
    root.mkdir()
    for name in ("lms.html", "lms.js"):
        shutil.copy(LMS / name, root / name)
    for name in ("scorm12.min.js", "scorm2004.min.js"):
        shutil.copy(NODE / name, root / name)
    (root / "favicon.ico").write_bytes(b"")
    for name, data in built.items():
        zipfile.ZipFile(io.BytesIO(data)).extractall(root / name)
        # Time the tracker's <script> (fetch and run, blocking the page) and the content's
        # LMSInitialize call, which the tracker wraps to read the learner and send the beacon.
        index = root / name / "index.html"
        tag = f'<script src="{packages.TRACKER_FILE}"></script>'
        html = index.read_text().replace("<head>", "<head><script>window.t0 = performance.now()</script>", 1)
        html = html.replace(tag, tag + "<script>window.t1 = performance.now()</script>", 1)
        index.write_text(html)
        course = root / name / "course.js"
        course.write_text(course.read_text().replace(
            'open = String(api[calls.init]("")) === "true";',
            'var s = performance.now(); open = String(api[calls.init]("")) === "true"; '
            "window.initMs = performance.now() - s;"))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    results: dict[str, list[float]] = {name: [] for name in built}
    fetches: list[float] = []
    blocking: list[float] = []
    init_ms: dict[str, list[float]] = {name: [] for name in built}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        for i in range(runs + 3):
            for name in built:
                context = browser.new_context()
                page = context.new_page()
                page.goto(f"{base}/lms.html?version=1.2&student_id=s1&student_name=A&launch={name}/index.html")
                page.wait_for_function("document.getElementById('content').contentDocument && "
                                       "document.getElementById('content').contentDocument.readyState === 'complete'")
                frame = next(f for f in page.frames if f.parent_frame is not None)
                took = frame.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
                fetched = frame.evaluate(
                    "(performance.getEntriesByType('resource').filter(e => e.name.endsWith('/"
                    + packages.TRACKER_FILE + "'))[0] || {}).duration")
                script_ms, initialise_ms = frame.evaluate("[window.t1 - window.t0, window.initMs]")
                if i >= 3:  # warm-up runs are left out
                    results[name].append(took)
                    init_ms[name].append(initialise_ms)
                    if name == "subscription":
                        blocking.append(script_ms)
                    if fetched is not None:
                        fetches.append(fetched)
                context.close()
        browser.close()
    server.shutdown()
    for name, values in results.items():
        print(f"{name:>12}: content loaded in median {statistics.median(values):.1f} ms, "
              f"p90 {sorted(values)[int(len(values) * 0.9) - 1]:.1f} ms over {len(values)} launches")
    added = statistics.median(results["subscription"]) - statistics.median(results["perpetual"])
    print(f"tracker adds {added:.1f} ms (median) to the course's load; "
          f"its own fetch (in parallel with the course's other files) took median {statistics.median(fetches):.1f} ms")
    print(f"the tracker's <script> holds the page up for median {statistics.median(blocking):.2f} ms "
          f"(p90 {sorted(blocking)[int(len(blocking) * 0.9) - 1]:.2f} ms)")
    print(f"the content's LMSInitialize takes median {statistics.median(init_ms['subscription']):.2f} ms with the "
          f"tracker (it reads the learner and sends there), {statistics.median(init_ms['perpetual']):.2f} ms without")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
