"""Migrations: `flask db upgrade` on an empty database, then `flask db check` finds no drift from the models.

Runs on the database kind of the session: SQLite, or a fresh PostgreSQL
database (created here, dropped after) when TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest
import time_machine
from alembic.script import ScriptDirectory
from conftest import ROOT, TEST_SECRETS, _config, _postgres_url, scratch_database_name
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import db

MODEL_TABLES = {"clients", "client_keys", "courses", "learners", "events", "daily_usage", "refused_origins",
                "package_issues", "staff_users", "staff_sessions", "api_tokens", "audit_entries"}


@pytest.fixture
def empty_database(database_kind, tmp_path):
    if database_kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    admin_url = make_url(_postgres_url())
    name = scratch_database_name("migrate")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def flask_cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(APP_ENV="test", DATABASE_URL=url, **TEST_SECRETS)
    return subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_upgrade_on_an_empty_database_then_check_reports_no_drift(empty_database):
    upgrade = flask_cli(empty_database, "db", "upgrade")
    assert upgrade.returncode == 0, upgrade.stderr
    engine = create_engine(empty_database)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    finally:
        engine.dispose()
    assert MODEL_TABLES <= tables
    check = flask_cli(empty_database, "db", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout + check.stderr
    assert head == ScriptDirectory(str(ROOT / "migrations")).get_current_head()


def test_check_notices_drift_and_downgrade_upgrade_round_trips(empty_database):
    """The check is not blind: a schema that differs from the models fails it."""
    application = create_app(_config(empty_database))
    runner = application.test_cli_runner()
    with application.app_context():
        try:
            assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
            with db.engine.begin() as conn:
                conn.execute(text("DROP INDEX ix_daily_usage_learner"))
            drift = runner.invoke(args=["db", "check"])
            assert drift.exit_code != 0
            with db.engine.begin() as conn:
                conn.execute(text("CREATE INDEX ix_daily_usage_learner ON daily_usage (learner_id)"))
            assert runner.invoke(args=["db", "check"]).exit_code == 0

            assert runner.invoke(args=["db", "downgrade", "base"]).exit_code == 0
            db.engine.dispose()
            assert not (set(inspect(db.engine).get_table_names()) & MODEL_TABLES)
            assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
            assert runner.invoke(args=["db", "check"]).exit_code == 0
        finally:
            db.session.remove()
            db.engine.dispose()


# --- 7c3f2a9e4b10: clients' own licence period and seat limit become licence terms ---------------

BEFORE_TERMS = "5e0c1f7a9d21"
TERMS_ONLY = "7c3f2a9e4b10"
TODAY = dt.date(2026, 11, 20)


def _at(day: dt.date, hour: int = 9) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=dt.UTC)


def _old_settings_database(url: str):
    """A database at the revision before terms were the one model, holding clients with their own
    period and seat limit, beacons in two months, and one client that has a term already."""
    from conftest import TEST_PARAMS, HttpsClient, beacon_body
    from flask_migrate import downgrade, upgrade

    from app.clients import services as client_service
    from app.licensing import terms as licence_terms

    application = create_app(_config(url))
    application.test_client_class = HttpsClient
    with application.app_context():
        # Beacons are stored by today's ingest (it writes tables later revisions made), then the
        # database goes back to the revision before terms, its events and usage kept.
        upgrade(directory=str(ROOT / "migrations"))
        made = {}
        with time_machine.travel(_at(dt.date(2026, 10, 1)), tick=False):
            for name in ("Monthly", "Yearly", "Termed", "Unlimited", "Plain"):
                made[name] = client_service.create_client(db.session, name=name, actor="test", params=TEST_PARAMS)
        http = application.test_client()
        sends = {  # (day, client, student ids)
            (dt.date(2026, 10, 5), "Monthly"): ["m1", "m2", "m3"], (dt.date(2026, 11, 2), "Monthly"): ["m1", "m4"],
            (dt.date(2026, 11, 9), "Monthly"): ["m5", "m6"],
            (dt.date(2026, 10, 6), "Yearly"): ["y1", "y2", "y3"], (dt.date(2026, 11, 3), "Yearly"): ["y3", "y4", "y5"],
            (dt.date(2026, 11, 4), "Yearly"): ["y6"],
            (dt.date(2026, 10, 7), "Termed"): ["t1", "t2"], (dt.date(2026, 11, 5), "Termed"): ["t2", "t3", "t4", "t5"],
            (dt.date(2026, 11, 6), "Unlimited"): ["u1"], (dt.date(2026, 11, 7), "Plain"): ["p1", "p2"],
        }
        for (day, name), students in sends.items():
            with time_machine.travel(_at(day), tick=False):
                for student in students:
                    response = http.post("/api/v1/beacons", json=beacon_body(made[name][1], student_id=student))
                    assert response.status_code == 204, response.get_data(as_text=True)
        downgrade(directory=str(ROOT / "migrations"), revision=BEFORE_TERMS)
        licence_terms.add_term(db.session, made["Termed"][0], actor="test", starts_on=dt.date(2026, 11, 1),
                               ends_on=dt.date(2026, 11, 30), seat_limit=3)
        with db.engine.begin() as conn:  # the old columns, as the old Settings page saved them
            for name, start, end, limit in (("Monthly", None, None, 10),
                                            ("Yearly", dt.date(2026, 4, 1), dt.date(2027, 3, 31), 5),
                                            ("Termed", None, None, 7),
                                            ("Unlimited", dt.date(2026, 1, 1), dt.date(2026, 12, 31), None)):
                conn.execute(text("UPDATE clients SET licence_start = :s, licence_end = :e, seat_limit = :n "
                                  "WHERE slug = :slug"), {"s": start, "e": end, "n": limit,
                                                          "slug": made[name][0].slug})
        slugs = {name: client.slug for name, (client, _key) in made.items()}
        db.session.remove()
        db.engine.dispose()
    return application, slugs


def test_own_period_and_seat_limit_become_terms_with_the_same_figures(empty_database):
    from conftest import TEST_PASSWORD, csrf_token_from
    from flask_migrate import downgrade, upgrade

    from app.billing import figures as billing
    from app.licensing import licences, periods
    from app.licensing import terms as licence_terms
    from app.licensing.models import LicenceTerm
    from app.models import AuditEntry, Client
    from app.staff import services as staff_service

    application, slugs = _old_settings_database(empty_database)
    # What the old rules gave on TODAY (the term in force, else the client's own period when it
    # had both ends and covered the day, else the month; the term's limit, else the client's own):
    old = {"Monthly": ((dt.date(2026, 11, 1), dt.date(2026, 11, 30)), 10, 4),
           "Yearly": ((dt.date(2026, 4, 1), dt.date(2027, 3, 31)), 5, 6),
           "Termed": ((dt.date(2026, 11, 1), dt.date(2026, 11, 30)), 3, 4),
           "Unlimited": ((dt.date(2026, 1, 1), dt.date(2026, 12, 31)), None, 1),
           "Plain": ((dt.date(2026, 11, 1), dt.date(2026, 11, 30)), None, 2)}
    with application.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        engine_columns = {c["name"] for c in inspect(db.engine).get_columns("clients")}
        assert not engine_columns & {"seat_limit", "licence_start", "licence_end"}, "the old columns are gone"
        clients = {name: db.session.scalar(select(Client).where(Client.slug == slug)) for name, slug in slugs.items()}

        def terms_of(name):
            return [(t.starts_on, t.ends_on, t.seat_limit, t.seat_window, t.at_limit, t.after_expiry)
                    for t in licence_terms.terms(db.session, clients[name].id)]

        far, rec = dt.date(2099, 12, 31), "record"
        assert terms_of("Monthly") == [(dt.date(2026, 10, 1), far, 10, "month", rec, rec)]
        assert terms_of("Yearly") == [(dt.date(2026, 4, 1), dt.date(2027, 3, 31), 5, "term", rec, rec),
                                      (dt.date(2027, 4, 1), far, 5, "month", rec, rec)]
        assert terms_of("Termed") == [(dt.date(2026, 10, 1), dt.date(2026, 10, 31), 7, "month", rec, rec),
                                      (dt.date(2026, 11, 1), dt.date(2026, 11, 30), 3, "term", rec, rec),
                                      (dt.date(2026, 12, 1), far, 7, "month", rec, rec)]
        assert terms_of("Unlimited") == [(dt.date(2026, 1, 1), dt.date(2026, 12, 31), None, "term", rec, rec)]
        assert terms_of("Plain") == []
        # Nothing lost: the old values are in the audit log, per client.
        entries = {e.client_id: e for e in db.session.scalars(select(AuditEntry).where(
            AuditEntry.action == "licence.term_from_settings"))}
        assert set(entries) == {clients[n].id for n in ("Monthly", "Yearly", "Termed", "Unlimited")}
        assert entries[clients["Yearly"].id].before == {"licence_start": "2026-04-01", "licence_end": "2027-03-31",
                                                        "seat_limit": 5}

        # The same period, limit and seats used as before, on the services every face calls...
        for name, ((start, end), limit, used) in old.items():
            client = clients[name]
            period = periods.current_period(client, TODAY)
            assert (period.start, period.end) == (start, end), name
            assert billing.seat_limit(db.session, client, TODAY) == limit, name
            assert billing.unique_users(db.session, client.id, start, end) == used, name
        # ... October under the old monthly limit still counts 3 of 10 (a seat window of the new term).
        october = periods.Period(dt.date(2026, 10, 1), dt.date(2026, 10, 31))
        term, window = licences.range_seat_window(db.session, clients["Monthly"].id, october)
        assert (term.seat_limit, window) == (10, october)

        # ... and on the pages: the admin's client list and each client's billing seat card.
        staff = staff_service.create_staff(db.session, email="admin@vendor.example", role="admin",
                                           password=TEST_PASSWORD, actor="test")
        http = application.test_client()
        with time_machine.travel(_at(TODAY, 12), tick=False):
            token = csrf_token_from(http.get("/login").get_data(as_text=True))
            assert http.post("/login", data={"email": staff.email, "password": TEST_PASSWORD, "csrf_token": token},
                             headers={"Referer": "https://localhost/login"}).status_code == 302
            listing = http.get("/admin/").get_data(as_text=True)
            for name, ((start, end), limit, used) in old.items():
                row = listing.split(f">{name}</a>")[1].split("</tr>")[0]
                assert f"{start.isoformat()} – {end.isoformat()}" in row, name
                assert f"{used}{f' / {limit}' if limit is not None else ''}</span>" in row, name
                card = http.get(f"/billing/{slugs[name]}").get_data(as_text=True).split('id="stat-seats">')[1]
                card = card.split('id="stat-completers"')[0]
                if limit is not None:
                    assert f"{used} / {limit}" in card, name
                else:
                    assert "No seat limit" in card, name

        # Downgrade puts the columns back from the audit log and removes the terms it made.
        db.session.remove()
        downgrade(directory=str(ROOT / "migrations"), revision=BEFORE_TERMS)
        with db.engine.connect() as conn:
            rows = {r.slug: (r.licence_start, r.licence_end, r.seat_limit) for r in conn.execute(text(
                "SELECT slug, licence_start, licence_end, seat_limit FROM clients"))}
            left = conn.execute(text("SELECT client_id, starts_on FROM licence_terms")).all()
        def as_date(value):  # SQLite's raw rows hold ISO strings
            return value if value is None or isinstance(value, dt.date) else dt.date.fromisoformat(value)

        rows = {slug: tuple(as_date(v) if i < 2 else v for i, v in enumerate(r)) for slug, r in rows.items()}
        assert rows[slugs["Monthly"]] == (None, None, 10)
        assert rows[slugs["Yearly"]] == (dt.date(2026, 4, 1), dt.date(2027, 3, 31), 5)
        assert rows[slugs["Unlimited"]] == (dt.date(2026, 1, 1), dt.date(2026, 12, 31), None)
        assert len(left) == 1, "only the term made before the migration is left"
        upgrade(directory=str(ROOT / "migrations"))
        assert db.session.scalar(select(func.count()).select_from(LicenceTerm)) == 7, "the same terms again"
        db.session.remove()
        db.engine.dispose()
