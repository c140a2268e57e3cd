"""Hostile uploads (issue 18): zip bombs, falsified zips, a full content store and manifests
that carry a DTD get a clear refusal, never a 500, a traceback or gigabytes of memory.

The zip bomb is measured, not timed: the CLI runs in a child process whose peak
resident memory the kernel reports (``os.wait4``), and the admin's upload runs in
this process under ``tracemalloc``.
"""

from __future__ import annotations

import functools
import io
import os
import re
import struct
import subprocess
import sys
import tempfile
import tracemalloc
import zipfile

import pytest
from conftest import ROOT, TEST_SECRETS, csrf_token_from, require
from scorm_content import AUTHORING_1_2_MANIFEST, AUTHORING_PAGE, AUTHORING_SCRIPT
from sqlalchemy import func, select

from app import packages
from app.extensions import db
from app.models import PackageIssue, RemoteContent

# one_database: zip and manifest checks, memory and disk bounds.
pytestmark = pytest.mark.one_database

BOMB_BYTES = 600 * 1024**2  # a 600 MiB member of zeros: about 600 KB zipped
CHILD_RSS_CEILING = 320 * 1024**2  # the CLI's own footprint is about 140 MB
ADMIN_PEAK_CEILING = 48 * 1024**2


def bomb_zip(path, declared: int | None = None) -> None:
    """A course whose index.html is followed by BOMB_BYTES of zeros in one member.

    ``declared``: falsify that member's size in both headers (the real data stays).
    """
    path.write_bytes(_bomb())
    if declared is not None:
        falsify_size(path, "media/zeros.bin", declared)


@functools.cache
def _bomb() -> bytes:
    """Made once per test process (deflating 600 MiB costs ~3 s of CPU); about 600 KB."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("index.html", "<!DOCTYPE html><html><head></head><body>bomb</body></html>")
        with archive.open("media/zeros.bin", "w", force_zip64=True) as member:
            chunk = bytes(4 * 1024**2)
            for _ in range(BOMB_BYTES // len(chunk)):
                member.write(chunk)
    return buffer.getvalue()


def falsify_size(path, name: str, declared: int) -> None:
    """Write ``declared`` as the member's uncompressed size in its local and central headers."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = data.find(signature)
        while at >= 0 and data[at + name_at:at + name_at + len(encoded)] != encoded:
            at = data.find(signature, at + 4)
        assert at >= 0, f"no {signature!r} header for {name}"
        if struct.unpack_from("<L", data, size_at + at)[0] == 0xFFFFFFFF:
            # zip64: the real size is in the extra field (id 1, then the 8-byte size first).
            name_len, extra_len = struct.unpack_from("<HH", data, at + name_at - (4 if name_at == 30 else 18))
            extra = at + name_at + name_len
            assert struct.unpack_from("<H", data, extra)[0] == 1
            struct.pack_into("<Q", data, extra + 4, declared)
        else:
            struct.pack_into("<L", data, at + size_at, declared)
    path.write_bytes(bytes(data))


def falsified_zip(path) -> None:
    """A small course whose script's header says 100 bytes where there are 20 000."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("index.html", '<!DOCTYPE html><html><head><script src="app.js"></script></head></html>')
        archive.writestr("app.js", "var course = 1;\n" * 1250)
    falsify_size(path, "app.js", 100)


def run_cli(database_url, *args, env_extra=None) -> tuple[subprocess.CompletedProcess, int]:
    """``flask --app wsgi ARGS`` in a child process: its result and its peak resident bytes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL")}
    env.update({"APP_ENV": "test", **TEST_SECRETS, "DATABASE_URL": database_url, **(env_extra or {})})
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                                 stdout=out, stderr=err)
        _pid, status, usage = os.wait4(child.pid, 0)  # this child's own peak, not the largest of all children
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(child.args, child.returncode, out.read().decode(), err.read().decode())
    return result, usage.ru_maxrss * 1024


def assert_one_line_error(result, *fragments) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def csm(make_staff, login):
    user = make_staff("csm", email="casey@vendor.example")
    login(user)
    return user


def admin_upload(client, customer, content: bytes, mode="deployed", measure=False):
    """POST a course to the admin's package form; ``measure``: also the Python memory peak of the POST."""
    url = f"/admin/clients/{customer.slug}/packages"
    token = csrf_token_from(client.get(url).get_data(as_text=True))
    if measure:
        tracemalloc.start()
        tracemalloc.reset_peak()
        try:
            response = admin_upload_with(client, url, token, content, mode)
            return response, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    return admin_upload_with(client, url, token, content, mode)


def admin_upload_with(client, url, token, content, mode):
    response = client.post(url, data={"csrf_token": token, "course_title": "Fire Safety", "scorm_version": "1.2",
                                      "mode": mode, "content": (io.BytesIO(content), "course.zip")},
                           content_type="multipart/form-data")
    response.request.environ["wsgi.input"].close()  # the test client spools a large body to a file
    return response


def issues() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(PackageIssue))


# --- zip bombs: memory bounded, a clear refusal ------------------------------------------


@pytest.mark.parametrize("lie", [False, True], ids=["honest-headers", "falsified-headers"])
def test_cli_zip_bomb_is_refused_in_bounded_memory(make_client, database_url, tmp_path, lie):
    """Headers that tell the truth are refused before unpacking; headers that lie are caught while
    unpacking (the member never unpacks past its claimed size, and its checksum then fails)."""
    customer, _ = make_client()
    bomb = tmp_path / "bomb.zip"
    bomb_zip(bomb, declared=1000 if lie else None)
    assert bomb.stat().st_size < 2 * 1024**2
    target = tmp_path / "out.zip"
    result, peak = run_cli(database_url, "package", "build", "--client", customer.slug, "--course", "Bomb",
                           "--scorm", "1.2", "--content", str(bomb), "-o", str(target))
    assert_one_line_error(result, "damaged" if lie else "zip bomb")
    assert peak < CHILD_RSS_CEILING, f"the CLI peaked at {peak // 1024**2} MiB"
    assert not target.exists() and list(tmp_path.glob(".*.part")) == []
    assert issues() == 0


@pytest.mark.parametrize("lie", [False, True], ids=["honest-headers", "falsified-headers"])
def test_admin_zip_bomb_is_a_400_in_bounded_memory(client, csm, make_client, tmp_path, lie):
    customer, _ = make_client(name="Acme")
    bomb = tmp_path / "bomb.zip"
    bomb_zip(bomb, declared=1000 if lie else None)
    response, peak = admin_upload(client, customer, bomb.read_bytes(), measure=True)
    assert response.status_code == 400
    assert ("damaged" if lie else "zip bomb") in response.get_data(as_text=True)
    # The upload itself (about 600 KB) is in memory twice over at most; no unpacked member is.
    assert peak < ADMIN_PEAK_CEILING, f"the upload peaked at {peak // 1024**2} MiB of Python memory"
    assert issues() == 0


def test_a_zip_of_more_entries_than_allowed_is_refused_before_zipfile_reads_them(make_client, monkeypatch):
    """The central directory is walked and counted first: zipfile never builds the entries."""
    customer, _ = make_client()
    monkeypatch.setattr(packages.zipsafety, "MAX_FILES", 50)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.html", "<html></html>")
        for n in range(60):
            archive.writestr(f"empty/{n}.txt", b"")
    parsed = []
    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", lambda self: parsed.append(self))
    with pytest.raises(packages.PackageError, match="more than 50 files"):
        packages.package_bytes(db.session, client=customer, course_title="Many", scorm_version="1.2",
                               content=buffer, server_url="https://t.example", issued_by="test")
    assert parsed == []


def test_bzip2_members_are_refused(make_client):
    """bzip2 and LZMA unpack a whole input block at once; only deflate is unpacked a chunk at a time."""
    customer, _ = make_client()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_BZIP2) as archive:
        archive.writestr("index.html", "<html></html>")
    buffer.seek(0)
    with pytest.raises(packages.PackageError, match="compressed with method 12"):
        packages.package_bytes(db.session, client=customer, course_title="B", scorm_version="1.2", content=buffer,
                               server_url="https://t.example", issued_by="test")


# --- falsified and damaged zips ----------------------------------------------------------


def test_admin_falsified_zip_is_a_400_with_a_message(client, csm, make_client, tmp_path):
    customer, _ = make_client(name="Acme")
    path = tmp_path / "falsified.zip"
    falsified_zip(path)
    for mode in ("deployed", "remote"):
        response = admin_upload(client, customer, path.read_bytes(), mode=mode)
        assert response.status_code == 400, mode
        html = response.get_data(as_text=True)
        assert "the zip is damaged: &#39;app.js&#39; does not unpack" in html and "make the zip again" in html
    assert issues() == 0


def test_cli_falsified_zip_is_one_line_and_a_non_zero_exit(make_client, database_url, tmp_path):
    customer, _ = make_client()
    path = tmp_path / "falsified.zip"
    falsified_zip(path)
    target = tmp_path / "out.zip"
    result, _peak = run_cli(database_url, "package", "build", "--client", customer.slug, "--course", "F",
                            "--scorm", "1.2", "--content", str(path), "-o", str(target))
    assert_one_line_error(result, "the zip is damaged: 'app.js' does not unpack")
    assert not target.exists() and issues() == 0


def test_any_damage_to_a_zip_is_a_package_error(make_client, tmp_path):
    """Every byte flipped in turn (a fixed sample): refused with PackageError, or built; nothing else."""
    customer, _ = make_client()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("imsmanifest.xml", AUTHORING_1_2_MANIFEST)
        archive.writestr("course/story.html", AUTHORING_PAGE.format(version="1.2"))
        archive.writestr("course/story.js", AUTHORING_SCRIPT)
    original = buffer.getvalue()
    refused = 0
    for at in range(0, len(original), 11):
        for value in (0x00, original[at] ^ 0x20):
            damaged = bytearray(original)
            damaged[at] = value
            try:
                packages.package_bytes(db.session, client=customer, course_title="Fuzz", scorm_version="1.2",
                                       content=io.BytesIO(bytes(damaged)), server_url="https://t.example",
                                       issued_by="test")
            except packages.PackageError:
                refused += 1
    assert refused > 50


# --- a full content store ----------------------------------------------------------------


@pytest.fixture
def tiny_store(tmp_path):
    """A content store on a real 1 MiB tmpfs: writing more fails with ENOSPC, as a full disk does."""
    mount = tmp_path / "tiny-store"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    require(done.returncode == 0, f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def incompressible_course(megabytes: int = 2) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("index.html", "<!DOCTYPE html><html><head></head><body>video</body></html>")
        archive.writestr("media/video.mp4", os.urandom(megabytes * 1024**2))
    return buffer.getvalue()


def test_admin_remote_build_into_a_full_store_says_so(client, csm, make_client, app, tiny_store):
    app.extensions["content_store"].root = tiny_store
    customer, _ = make_client(name="Acme")
    response = admin_upload(client, customer, incompressible_course(), mode="remote")
    assert response.status_code == 507
    html = response.get_data(as_text=True)
    assert "could not write the course to the content store: No space left on device" in html
    assert "an operator must free space" in html and str(tiny_store) not in html
    assert issues() == 0
    assert db.session.scalar(select(func.count()).select_from(RemoteContent)) == 0


def test_cli_remote_build_into_a_full_store_is_one_line(make_client, database_url, tmp_path, tiny_store):
    customer, _ = make_client()
    course = tmp_path / "course.zip"
    course.write_bytes(incompressible_course())
    result, _peak = run_cli(database_url, "package", "build", "--client", customer.slug, "--course", "Video",
                            "--scorm", "1.2", "--content", str(course), "--mode", "remote", "-o",
                            str(tmp_path / "out.zip"), env_extra={"CONTENT_DIR": str(tiny_store)})
    assert_one_line_error(result, "No space left on device")
    assert issues() == 0


def test_cli_package_onto_a_full_disk_is_one_line(make_client, database_url, tmp_path, tiny_store):
    customer, _ = make_client()
    course = tmp_path / "course.zip"
    course.write_bytes(incompressible_course())
    result, _peak = run_cli(database_url, "package", "build", "--client", customer.slug, "--course", "Video",
                            "--scorm", "1.2", "--content", str(course), "-o", str(tiny_store / "out.zip"))
    assert_one_line_error(result, "could not write the package file: No space left on device")
    assert list(tiny_store.iterdir()) == [] and issues() == 0


# --- manifests carrying a DTD ------------------------------------------------------------

XXE = '<!DOCTYPE manifest [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'


def manifest_course(manifest: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("imsmanifest.xml", manifest)
        archive.writestr("course/story.html", AUTHORING_PAGE.format(version="1.2"))
        archive.writestr("course/story.js", AUTHORING_SCRIPT)
    return buffer.getvalue()


def utf16(text: str) -> bytes:
    return text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")


DTD_MANIFESTS = {
    "utf-16": utf16(AUTHORING_1_2_MANIFEST.replace("?>\n", "?>\n" + XXE, 1)),
    "after-4-KB-of-comment": AUTHORING_1_2_MANIFEST.replace(
        "?>\n", "?>\n<!--" + "padding " * 600 + "-->\n" + XXE, 1).encode(),
    "latin-1": AUTHORING_1_2_MANIFEST.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').replace(
        "?>\n", "?>\n<!DOCTYPE manifest SYSTEM \"http://attacker.example/x.dtd\">\n", 1).encode("latin-1"),
}


@pytest.mark.parametrize("shape", sorted(DTD_MANIFESTS))
def test_a_manifest_with_a_dtd_never_reaches_an_lms(make_client, shape, tmp_path, runner):
    """Refused by the builder (service, CLI); no package is written, so no LMS gets the DTD."""
    customer, _ = make_client()
    course = tmp_path / "course.zip"
    course.write_bytes(manifest_course(DTD_MANIFESTS[shape]))
    target = tmp_path / "out.zip"
    result = runner.invoke(args=["package", "build", "--client", customer.slug, "--course", "X", "--scorm", "1.2",
                                 "--content", str(course), "-o", str(target)])
    assert result.exit_code == 1 and "declares a DOCTYPE or entities" in result.output, result.output
    assert not target.exists() and issues() == 0


def test_a_dtd_in_the_admin_upload_is_a_400(client, csm, make_client):
    customer, _ = make_client(name="Acme")
    response = admin_upload(client, customer, manifest_course(DTD_MANIFESTS["utf-16"]))
    assert response.status_code == 400 and "declares a DOCTYPE or entities" in response.get_data(as_text=True)
    assert issues() == 0


def test_a_utf16_manifest_without_a_dtd_is_read_and_shipped_unchanged(make_client):
    customer, _ = make_client()
    manifest = utf16(AUTHORING_1_2_MANIFEST)
    data, built = packages.package_bytes(db.session, client=customer, course_title="Safety First",
                                         scorm_version="1.2", content=io.BytesIO(manifest_course(manifest)),
                                         server_url="https://t.example", issued_by="test")
    assert built.launch_files == ["course/story.html"]
    shipped = zipfile.ZipFile(io.BytesIO(data)).read("imsmanifest.xml")
    assert shipped == manifest
    assert not re.search(r"<!DOCTYPE|<!ENTITY", shipped.decode("utf-16"), re.IGNORECASE)
