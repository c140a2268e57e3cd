"""A blocking licence enforced on the server, not only in the launcher (ASVS 5.0 level 2).

Whoever opens a remote package can read its beacon key (it is in the tracker the content
origin serves) and skip its launcher. These tests play that person, through the real HTTPS
test client on both origins: the course without a seat grant, forged beacons against a
blocking term, and the seat check as a membership oracle. The real-browser launch on a
blocking term is in tests/test_remote_browser.py.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import re
import zipfile
from urllib.parse import urljoin

import pytest
import time_machine
from conftest import beacon_body
from sqlalchemy import func, select

from app import packages
from app.extensions import db
from app.ingest import erasure as learners
from app.ingest.models import SeatlessBeacon
from app.learners.held_back_models import HeldBackBeacon
from app.licensing import licences, periods, seat_grants
from app.licensing import terms as licence_terms
from app.models import Client, DailyUsage, Event, Learner, RemoteContent

LMS = "https://lms.acme.example"
SERVER = "https://track.vendor.example"


@pytest.fixture
def content_base(app) -> str:
    return app.config["CONTENT_URL"]


def remote_package(customer, version="1.2"):
    data, built = packages.package_bytes(db.session, client=customer, course_title="Anti-Bribery",
                                         scorm_version=version, content=None, mode="remote", server_url=SERVER,
                                         issued_by="test")
    zipfile.ZipFile(io.BytesIO(data))
    db.session.rollback()
    row = db.session.scalar(select(RemoteContent).where(RemoteContent.package_id == built.issue.package_id))
    return built.issue.package_id, row


def blocking_term(customer, seats, **kwargs):
    today = dt.datetime.now(dt.UTC).date()
    return licence_terms.add_term(db.session, customer, actor="test", starts_on=today - dt.timedelta(days=30),
                                  ends_on=today + dt.timedelta(days=365), seat_limit=seats, at_limit="block", **kwargs)


def ask(client, content_base, package_id, student_id, origin=LMS):
    headers = {"Content-Type": "text/plain"}
    if origin is not None:
        headers["Origin"] = origin
    return client.post(f"/{package_id}/seat", base_url=content_base, data=json.dumps({"student_id": student_id}),
                       headers=headers)


def get(client, content_base, path):
    return client.get(path, base_url=content_base, buffered=True)


def seats(customer) -> int:
    db.session.rollback()
    return licences.seats_used(db.session, customer.id, periods.window_in_force(
        db.session, customer.id, dt.datetime.now(dt.UTC).date()))


# --- the course without a seat grant -----------------------------------------------


def test_the_content_origin_serves_a_blocking_clients_course_only_with_a_seat_grant(make_client, client,
                                                                                    content_base):
    customer, _ = make_client(name="Acme", origins=[LMS])
    package_id, row = remote_package(customer)
    blocking_term(customer, seats=5)
    version = row.content_version

    # Skipping the launcher: the launch address, the player, the course's page, its files and the
    # tracker (which holds the beacon key) are all refused, with a page that says what to do.
    for path in (f"/{package_id}/launch/0", f"/{package_id}/{version}/{packages.PLAYER_FILE}?sco=0",
                 f"/{package_id}/{version}/index.html", f"/{package_id}/{version}/course.js",
                 f"/{package_id}/{version}/{packages.TRACKER_FILE}"):
        refused = get(client, content_base, path)
        assert refused.status_code == 403, path
        assert "Open this course from your LMS" in refused.get_data(as_text=True)
        assert "ck_" not in refused.get_data(as_text=True) and "Set-Cookie" not in refused.headers

    # The launcher's way: a grant from the seat check, then the launch address with it.
    grant = ask(client, content_base, package_id, "ann@example.com").json["grant"]
    launch = get(client, content_base, f"/{package_id}/g/{grant}/launch/0")
    assert launch.status_code == 302 and launch.headers["Cache-Control"] == "no-store"
    player_path = launch.headers["Location"]
    assert player_path == f"/{package_id}/g/{grant}/{version}/{packages.PLAYER_FILE}?sco=0"
    player = get(client, content_base, player_path)
    assert player.status_code == 200
    src = html.unescape(re.search(r'<iframe id="course"[^>]*\ssrc="([^"]+)"', player.get_data(as_text=True))[1])
    course = get(client, content_base, urljoin(player_path, src))
    assert course.status_code == 200 and "Anti-Bribery" in course.get_data(as_text=True)
    script = get(client, content_base, urljoin(player_path, "course.js"))
    assert script.status_code == 200 and script.headers["Cache-Control"].startswith("private")
    tracker = get(client, content_base, urljoin(player_path, packages.TRACKER_FILE)).get_data(as_text=True)
    assert f'"grant": "{grant}"' in tracker, "the tracker's beacons carry the grant"

    # A grant is bound to its package and version, and cannot be forged or altered.
    other_id, _ = remote_package(customer)
    assert get(client, content_base, f"/{other_id}/g/{grant}/launch/0").status_code == 403
    assert get(client, content_base, f"/{package_id}/g/{grant}/{'0' * len(version)}/index.html").status_code in (403,
                                                                                                               404)
    tampered = grant[:-2] + ("AA" if not grant.endswith("AA") else "BB")
    assert get(client, content_base, f"/{package_id}/g/{tampered}/launch/0").status_code == 403
    assert get(client, content_base, f"/{package_id}/g/not-a-grant/{version}/index.html").status_code == 403

    # Short-lived: the launch and the player only just after the seat check; the course's other
    # files for a learning session, then no more.
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seat_grants.START_SECONDS + 60)
    with time_machine.travel(later, tick=False):
        assert get(client, content_base, f"/{package_id}/g/{grant}/launch/0").status_code == 403
        assert get(client, content_base, player_path).status_code == 403
        assert get(client, content_base, urljoin(player_path, "course.js")).status_code == 200
    with time_machine.travel(later + dt.timedelta(seconds=seat_grants.SESSION_SECONDS), tick=False):
        assert get(client, content_base, urljoin(player_path, "course.js")).status_code == 403


def test_a_client_that_only_records_and_flags_opens_as_before(make_client, client, content_base):
    customer, _ = make_client(origins=[LMS])
    package_id, _row = remote_package(customer)
    blocking_term(customer, seats=5).at_limit = "record"
    db.session.commit()
    assert ask(client, content_base, package_id, "ann@example.com").json == {"allowed": True}  # no grant needed
    launch = get(client, content_base, f"/{package_id}/launch/0")
    assert launch.status_code == 302
    assert get(client, content_base, launch.headers["Location"]).status_code == 200


# --- forged beacons against a blocking term ----------------------------------------


@pytest.mark.parametrize("anonymised", [False, True])
def test_forged_beacons_neither_fill_a_blocking_term_nor_seat_a_blocked_learner(app, make_client, client,
                                                                                content_base, anonymised):
    customer, _ = make_client(origins=[LMS], anonymised=anonymised)
    package_id, row = remote_package(customer)
    blocking_term(customer, seats=5)
    key = row.beacon_key  # as public as the package: whoever opens it can read it

    def send(student_id, **fields):
        return client.post("/api/v1/beacons", json=beacon_body(key, student_id=student_id, **fields),
                           headers={"Origin": LMS})

    # Five forged beacons: acknowledged (a beacon is never lost), set aside, no seat taken.
    for n in range(5):
        assert send(f"fake{n}").status_code == 204
    assert seats(customer) == 0
    assert db.session.scalar(select(func.count()).select_from(SeatlessBeacon)) == 5
    assert db.session.scalar(select(func.count()).select_from(Event)) == 0
    digests = db.session.scalars(select(SeatlessBeacon.learner_digest)).all()
    assert all(d.startswith("n:") and "fake" not in d for d in digests), "no plain ID is stored"

    # Genuine new learners are not locked out: each gets a grant and its beacon takes a seat.
    for n in range(5):
        answer = ask(client, content_base, package_id, f"learner{n}@example.com")
        assert answer.json["allowed"] is True, n
        assert send(f"learner{n}@example.com", grant=answer.json["grant"]).status_code == 204
    assert seats(customer) == 5

    # At the limit: a blocked learner is refused, and a forged beacon does not seat them either,
    # not even with another learner's grant.
    assert ask(client, content_base, package_id, "blocked@example.com").json == {"allowed": False}
    ann_grant = ask(client, content_base, package_id, "learner0@example.com").json["grant"]
    assert send("blocked@example.com").status_code == 204
    assert send("blocked@example.com", grant=ann_grant).status_code == 204
    assert send("blocked@example.com", grant="forged.grant.value").status_code == 204
    assert seats(customer) == 5
    assert ask(client, content_base, package_id, "blocked@example.com").json == {"allowed": False}
    reasons = db.session.scalars(select(SeatlessBeacon.reason).order_by(SeatlessBeacon.id)).all()
    assert reasons[-3:] == ["no_grant", "bad_grant", "bad_grant"]

    # A learner already seated takes no new seat: their beacons count as usual, grant or not
    # (a completion queued in the browser may arrive long after its launch).
    assert send("learner1@example.com", event="completed").status_code == 204
    db.session.rollback()
    assert db.session.scalar(select(func.sum(DailyUsage.completions))) == 1
    assert db.session.scalar(select(func.count()).select_from(Learner)) == 5

    # Erasure finds a learner's set-aside beacons by the same keyed digest.
    learners.erase_learner(db.session, app.extensions["pseudonymiser"], db.session.get(Client, customer.id),
                           "  Blocked@Example.com", actor="test")
    assert db.session.scalar(select(func.count()).select_from(SeatlessBeacon)) == 5


def test_a_placeholder_id_without_a_grant_is_held_back_not_set_aside(make_client, client):
    """A placeholder takes no seat either way: it waits with the other held-back beacons, releasable."""
    customer, _ = make_client(origins=[LMS])
    _package_id, row = remote_package(customer)
    blocking_term(customer, seats=5)
    answer = client.post("/api/v1/beacons", json=beacon_body(row.beacon_key, student_id="undefined"),
                         headers={"Origin": LMS})
    assert answer.status_code == 204
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(HeldBackBeacon)) == 1
    assert db.session.scalar(select(func.count()).select_from(SeatlessBeacon)) == 0
    assert seats(customer) == 0


def test_forged_beacons_are_shown_on_the_go_live_check(make_client, client, content_base, make_staff, login):
    customer, _ = make_client(origins=[LMS])
    _package_id, row = remote_package(customer)
    blocking_term(customer, seats=5)
    for n in range(3):
        assert client.post("/api/v1/beacons", json=beacon_body(row.beacon_key, student_id=f"fake{n}"),
                           headers={"Origin": LMS}).status_code == 204
    login(make_staff("csm"))
    page = client.get(f"/admin/clients/{customer.slug}/go-live").get_data(as_text=True)
    assert "Beacons set aside without a seat grant" in page
    assert "3 beacon(s) of 3 learner(s)" in page and "lms.acme.example" in page
    assert "fake0" not in page


def test_a_deployed_packages_beacons_still_count_on_a_blocking_term(make_client, client):
    """A deployed package runs on the LMS, not here: its beacon is all the server sees (README)."""
    customer, _ = make_client(origins=[LMS])
    _data, built = packages.package_bytes(db.session, client=customer, course_title="Deployed", scorm_version="1.2",
                                          content=None, mode="deployed", server_url=SERVER, issued_by="test")
    blocking_term(customer, seats=5)
    from scorm_content import script_config

    key = script_config(zipfile.ZipFile(io.BytesIO(_data)), packages.TRACKER_FILE)["key"]
    assert client.post("/api/v1/beacons", json=beacon_body(key, student_id="dana@example.com"),
                       headers={"Origin": LMS}).status_code == 204
    assert seats(customer) == 1
    assert db.session.scalar(select(func.count()).select_from(SeatlessBeacon)) == 0


# --- the seat check as a membership oracle -------------------------------------------


@pytest.mark.parametrize("anonymised", [False, True])
def test_the_seat_check_answers_only_the_lms_and_tells_nothing_under_the_limit(app, make_client, client,
                                                                                content_base, anonymised):
    customer, _ = make_client(origins=[LMS], anonymised=anonymised)
    package_id, row = remote_package(customer)
    blocking_term(customer, seats=3)
    grant = ask(client, content_base, package_id, "fake0").json["grant"]
    assert client.post("/api/v1/beacons", json=beacon_body(row.beacon_key, student_id="fake0", grant=grant),
                       headers={"Origin": LMS}).status_code == 204
    assert seats(customer) == 1

    # Only the client's LMS origins are answered; no Origin (a script outside a browser) neither.
    for origin in ("https://attacker.example", "http://lms.acme.example", None):
        refused = ask(client, content_base, package_id, "fake0", origin=origin)
        assert refused.status_code == 403 and "allowed" not in refused.json, origin
        assert "Access-Control-Allow-Origin" not in refused.headers

    # Under the limit a learner and someone never seen get the same answer: allowed, with a grant
    # (random, so nothing in it says who has a seat), worked out without looking them up: no
    # pseudonym is even computed (its cache would make a learner's answer come faster).
    pseudonymiser = app.extensions["pseudonymiser"]
    before = pseudonymiser.cache_info()
    known, unknown = (ask(client, content_base, package_id, s) for s in ("fake0", "never-seen"))
    assert pseudonymiser.cache_info() == before
    assert (known.status_code, unknown.status_code) == (200, 200)
    assert set(known.json) == set(unknown.json) == {"allowed", "grant"}
    assert known.json["allowed"] is unknown.json["allowed"] is True

    # At the limit, no more than the limit page itself shows: a new learner is refused.
    for n in (1, 2):
        g = ask(client, content_base, package_id, f"learner{n}").json["grant"]
        client.post("/api/v1/beacons", json=beacon_body(row.beacon_key, student_id=f"learner{n}", grant=g),
                    headers={"Origin": LMS})
    assert seats(customer) == 3
    assert ask(client, content_base, package_id, "never-seen").json == {"allowed": False}
    assert ask(client, content_base, package_id, "fake0").json["allowed"] is True


def test_without_allowed_origins_only_https_pages_are_answered(make_client, client, content_base):
    customer, _ = make_client()
    package_id, _row = remote_package(customer)
    blocking_term(customer, seats=3)
    assert ask(client, content_base, package_id, "ann", origin="https://any-lms.example").status_code == 200
    for origin in ("http://any-lms.example", "null", None):
        assert ask(client, content_base, package_id, "ann", origin=origin).status_code == 403
