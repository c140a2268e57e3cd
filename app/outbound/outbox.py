"""The transactional outbox: events leave the server as signed webhooks and e-mails.

Writers add an ``OutboxEvent`` inside their own transaction (the beacon path:
one small INSERT per event of interest, ``enqueue_for_beacon``). The worker
(``flask --app wsgi outbox run``) then, each in its own short transaction:

1. fans new events out into deliveries, working out the full payload there
   (the learner's course attributes), not on the beacon path;
2. checks the licences of clients that just had learners (thresholds,
   forecast, term ending; each alert once per term by its ``dedupe_key``);
3. claims due deliveries with a lease (``next_attempt_at`` moved past the
   attempt), sends them, and records the outcome: delivered, retry later with
   back-off, or dead after ``RETRY_FOR`` of failures (replayable in the admin).

Several workers may run at once: on PostgreSQL they claim rows with
``FOR UPDATE SKIP LOCKED``; on SQLite the database lock makes them take turns.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app import audit
from app.licensing import licences
from app.models import COMPLETION_KINDS, Client, Course, Event, Learner, StaffUser
from app.outbound import mail, webhooks
from app.outbound.models import OutboxDelivery, OutboxEvent, WebhookEndpoint
from app.staff import services as staff

log = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 10
BACKOFF_FACTOR = 3
MAX_DELAY = dt.timedelta(hours=6)
RETRY_FOR = dt.timedelta(days=3, hours=1)
THRESHOLDS = (80, 90, 100)
TERM_ENDING_DAYS = 30
# Alerts by e-mail (learner events go to webhooks only).
EMAIL_TYPES = ("licence.threshold", "licence.forecast", "licence.term_ending", "origin.refused", "identity.drift")


def new_webhook_id() -> str:
    return "msg_" + uuid.uuid4().hex


def backoff(attempts: int) -> dt.timedelta:
    """Delay after the ``attempts``-th failed try: 10 s, 30 s, 90 s, ... up to 6 hours."""
    return min(dt.timedelta(seconds=FIRST_RETRY_SECONDS * BACKOFF_FACTOR ** max(attempts - 1, 0)), MAX_DELAY)


# --- writing events ------------------------------------------------------------------


class _EnqueueStatement:
    """The one INSERT the beacon path adds, built once per dialect.

    ``ON CONFLICT DO NOTHING`` on the unique ``dedupe_key`` makes
    ``learner.enrolled`` happen once per learner and course, on their first launch.
    """

    def __init__(self, dialect_name: str):
        insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
        table = OutboxEvent.__table__
        self.statement = insert(table).values(
            webhook_id=bindparam("webhook_id", type_=table.c.webhook_id.type),
            type=bindparam("type", type_=table.c.type.type),
            client_id=bindparam("client_id", type_=table.c.client_id.type),
            dedupe_key=bindparam("dedupe_key", type_=table.c.dedupe_key.type),
            facts=bindparam("facts", type_=table.c.facts.type),
            occurred_at=bindparam("occurred_at", type_=table.c.occurred_at.type),
        ).on_conflict_do_nothing().returning(table.c.id)


@functools.cache
def _enqueue_statement(dialect_name: str) -> _EnqueueStatement:
    return _EnqueueStatement(dialect_name)


def enqueue(session: Session | Connection, type_: str, client_id: int | None, facts: dict, now: dt.datetime,
            dedupe_key: str | None = None) -> bool:
    """Add an event to the caller's transaction (an ORM session, or the beacon batch's connection).

    False: ``dedupe_key`` was used before (nothing added).
    """
    connection = session if isinstance(session, Connection) else session.connection()
    result = connection.execute(_enqueue_statement(connection.dialect.name).statement, {
        "webhook_id": new_webhook_id(), "type": type_, "client_id": client_id, "dedupe_key": dedupe_key,
        "facts": facts, "occurred_at": now,
    })
    # RETURNING, not rowcount: drivers disagree on rowcount after ON CONFLICT DO NOTHING.
    return result.first() is not None


class _KnownEnrolments:
    """(database, course, learner) triples whose ``learner.enrolled`` is committed: their launches skip the INSERT.

    Only a conflicting INSERT adds a pair (the row is then committed: PostgreSQL
    waits for a concurrent writer before it reports the conflict), so a rolled
    back beacon never hides an enrolment. Bounded: cleared when full.
    """

    def __init__(self, size: int = 200_000):
        self.size = size
        self.pairs: set[tuple[int, int]] = set()
        self.lock = threading.Lock()

    def __contains__(self, pair) -> bool:
        return pair in self.pairs

    def add(self, pair) -> None:
        with self.lock:
            if len(self.pairs) >= max(self.size, 1):
                self.pairs.clear()
            self.pairs.add(pair)


def enqueue_for_beacon(session: Session | Connection, kind: str, client_id: int, course_id: int, learner_id: int,
                       now: dt.datetime, directory=None) -> None:
    """The beacon path's hook: a launch may be an enrolment; a status is always an event.

    ``directory`` is the app's ClientDirectory: the known enrolments live beside its
    course ids (one per app, so a database rebuilt under the same name starts afresh).
    """
    facts = {"course_id": course_id, "learner_id": learner_id}
    if kind == "launch":
        known_enrolments = _known_enrolments(directory)
        pair = (course_id, learner_id)
        if pair in known_enrolments:
            return
        if not enqueue(session, "learner.enrolled", client_id, facts, now, f"enrolled:{course_id}:{learner_id}"):
            known_enrolments.add(pair)
    else:
        enqueue(session, f"learner.{kind}", client_id, facts, now)


def enqueue_refused_origin(session: Session, client_id: int, origin: str, now: dt.datetime) -> None:
    """A leak alert: once per client, origin and day."""
    enqueue(session, "origin.refused", client_id, {"origin": origin}, now,
            f"origin:{client_id}:{now.date().isoformat()}:{origin}"[:200])


def forget_learners(session: Session, client_id: int, learner_ids: list[int]) -> int:
    """Erasure: drop the learners' events (and their deliveries, bodies included) from the
    outbox, in the caller's transaction. Returns how many events went."""
    wanted = set(learner_ids)
    doomed = [event_id for event_id, facts in session.execute(
        select(OutboxEvent.id, OutboxEvent.facts).where(OutboxEvent.client_id == client_id,
                                                        OutboxEvent.type.like("learner.%")))
        if facts.get("learner_id") in wanted]
    for start in range(0, len(doomed), 500):
        chunk = doomed[start:start + 500]
        session.execute(delete(OutboxDelivery).where(OutboxDelivery.event_id.in_(chunk)))
        session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(chunk)))
    return len(doomed)


def _known_enrolments(directory) -> _KnownEnrolments:
    if directory is None:
        return _KnownEnrolments(size=0)
    known = getattr(directory, "known_enrolments", None)
    if known is None:
        known = directory.known_enrolments = _KnownEnrolments()
    return known


# --- fanning out -----------------------------------------------------------------------


def _locked(session: Session, statement):
    if session.get_bind().dialect.name == "postgresql":
        return statement.with_for_update(skip_locked=True)
    return statement


def _learner_data(session: Session, client: Client, event: OutboxEvent) -> dict:
    """The event's learner and course figures as they stood when its beacon was received (the
    worker may fan out later, after more beacons: nine enrolments say 1 to 9, not 9 each)."""
    course_id, learner_id = event.facts["course_id"], event.facts["learner_id"]
    learner = session.get(Learner, learner_id)
    course = session.get(Course, course_id)
    as_of = Event.received_at <= event.occurred_at
    mine = (Event.learner_id == learner_id, Event.course_id == course_id, as_of)
    first_enrolled = session.scalar(select(func.min(Event.received_at)).where(*mine, Event.kind == "launch"))
    first_completed = session.scalar(select(func.min(Event.received_at))
                                     .where(*mine, Event.kind.in_(COMPLETION_KINDS)))
    of_course = (Event.client_id == client.id, Event.course_id == course_id, as_of)
    enrolments = session.scalar(select(func.count(func.distinct(Event.learner_id)))
                                .where(*of_course, Event.kind == "launch"))
    completions = session.scalar(select(func.count(func.distinct(Event.learner_id)))
                                 .where(*of_course, Event.kind.in_(COMPLETION_KINDS)))
    return {
        "client": client.slug,
        "course": course.title if course else None,
        # The stored identity: the pseudonym for anonymised clients, never a plain ID or name.
        "learner": learner.identity if learner else None,
        "learner_pseudonymised": bool(learner and learner.pseudonymised),
        "first_enrolled_at": first_enrolled.isoformat() if first_enrolled else None,
        "first_completed_at": first_completed.isoformat() if first_completed else None,
        "course_enrolments": enrolments or 0,
        "course_completions": completions or 0,
    }


def _alert_text(event: OutboxEvent, client: Client | None, data: dict) -> tuple[str, str]:
    name = client.name if client else "a client"
    facts = event.facts
    if event.type == "licence.threshold":
        at_limit = ("At the limit new learners of remote packages see a 'licence limit reached' page."
                    if facts.get("at_limit") == "block" else "Every launch is still recorded.")
        used, limit, percent = facts["used"], facts["limit"], facts["percent"]
        share = f"{used * 100 / limit:.0f} %" if limit else "all"
        if percent >= 100:
            subject = (f"{name} has reached its seat limit" if used <= limit else
                       f"{name} is over its seat limit ({used} of {limit} seats)")
        else:
            subject = f"{name} has passed {percent} % of its seats"
        return (subject,
                f"{name} has {used} learner(s) counted against a limit of {limit} seat(s) for "
                f"{facts['window_start']} to {facts['window_end']}: {share} of the seats, past the {percent} % "
                "alert.\n\n" + at_limit)
    if event.type == "licence.forecast":
        return (f"{name} is likely to pass its seat limit",
                f"{name} has {facts['used']} of {facts['limit']} seats counted so far.\n{facts['statement']}")
    if event.type == "identity.drift":
        review = (f"\n\nReview the proposed pairs and merge them: {facts['review_url']}" if facts.get("review_url")
                  else "\n\nReview the proposed pairs in the admin (the client's Identities page).")
        return (f"{name}'s LMS changed its student IDs ({facts['from_shape']} → {facts['to_shape']})",
                f"Since {facts['since'][:10]}, {facts['new_learners']} new learner(s) of {name} arrived with "
                f"{facts['to_shape']} student IDs instead of {facts['from_shape']} ones, and "
                f"{facts['pairs']} of them match a learner already known by name. Until they are merged, each "
                "counts as a second learner in billing and seats." + review)
    if event.type == "licence.term_ending":
        return (f"{name}'s licence term ends on {facts['ends_on']}",
                f"The licence term of {name} ({facts['starts_on']} to {facts['ends_on']}) ends in "
                f"{facts['days_left']} day(s). Renew it in the admin (Licence page) if the client continues.")
    return (f"Beacons from an LMS not on {name}'s list",
            f"A package of {name} sent beacons from {facts['origin']}, which is not one of its allowed LMS "
            "hosts. The beacons were refused. A copied package is the usual cause; if this LMS is the "
            "client's, add it to the client's allowed origins.")


# Alerts a client's own contacts receive: its licence. A refused origin (a copied package, a leak)
# and ID-scheme drift are the vendor's to act on, with links into the admin: staff only.
CONTACT_ALERTS = frozenset({"licence.threshold", "licence.forecast", "licence.term_ending"})
STAFF_ALERT_ROLES = staff.ALERT_ROLES


def staff_recipients(session: Session, client: Client | None) -> list[str]:
    """The vendor's people an alert about ``client`` goes to: its CSM and the staff who opted in to
    every client's alerts; a client without an active CSM (none set, or deactivated, or no longer
    admin or CSM) goes to every active CSM instead, so no alert goes unread."""
    alerting = (StaffUser.active.is_(True), StaffUser.role.in_(STAFF_ALERT_ROLES))
    csm = client.csm if client is not None else None
    if csm is not None and csm.active and csm.role in STAFF_ALERT_ROLES:
        assigned = StaffUser.id == csm.id
    else:
        assigned = StaffUser.role == "csm"
    return sorted(session.scalars(select(StaffUser.email).where(
        *alerting, or_(assigned, StaffUser.all_client_alerts.is_(True)))))


def _recipients(session: Session, event: OutboxEvent, client: Client | None) -> list[str]:
    contacts = (licences.contacts(session, event.client_id)
                if event.client_id and event.type in CONTACT_ALERTS else [])
    return sorted(set(staff_recipients(session, client)) | set(contacts))


def fan_out(session: Session, now: dt.datetime, limit: int = 200) -> set[int]:
    """Turn new events into deliveries; commits. Returns the clients that had learner events."""
    events = list(session.scalars(_locked(session, select(OutboxEvent).where(OutboxEvent.fanned_out_at.is_(None))
                                          .order_by(OutboxEvent.id).limit(limit))))
    if not events:
        session.rollback()
        return set()
    # Paused endpoints too: their deliveries wait (deliver_due skips them) until they are resumed.
    endpoints = list(session.scalars(select(WebhookEndpoint)))
    touched: set[int] = set()
    for event in events:
        client = session.get(Client, event.client_id) if event.client_id else None
        if event.type.startswith("learner."):
            data = _learner_data(session, client, event) if client else {}
            if client:
                touched.add(client.id)
        else:
            data = {"client": client.slug if client else None,
                    **{k: v for k, v in event.facts.items() if not k.endswith("_id")}}
        body = json.dumps({"type": event.type, "timestamp": event.occurred_at.isoformat(), "data": data},
                          separators=(",", ":"), sort_keys=True)
        for endpoint in endpoints:
            if endpoint.wants(event.type, event.client_id):
                session.add(OutboxDelivery(event_id=event.id, channel="webhook", endpoint_id=endpoint.id,
                                           target=str(endpoint.id), body=body, next_attempt_at=now,
                                           created_at=now))
        if event.type in EMAIL_TYPES:
            subject, text = _alert_text(event, client, data)
            for address in _recipients(session, event, client):
                session.add(OutboxDelivery(event_id=event.id, channel="email", target=address, subject=subject,
                                           body=text, next_attempt_at=now, created_at=now))
        event.fanned_out_at = now
    session.commit()
    return touched


# --- licence alerts --------------------------------------------------------------------


def check_licences(session: Session, client_ids, today: dt.date, now: dt.datetime) -> None:
    """Thresholds, forecast and term ending for these clients; each alert once (dedupe key). Commits."""
    for client_id in sorted(client_ids):
        term = licences.term_in_force(session, client_id, today)
        if term is None:
            continue
        days_left = (term.ends_on - today).days
        if days_left <= TERM_ENDING_DAYS:
            enqueue(session, "licence.term_ending", client_id,
                    {"term_id": term.id, "starts_on": term.starts_on.isoformat(),
                     "ends_on": term.ends_on.isoformat(), "days_left": days_left},
                    now, f"term_ending:{term.id}")
        if term.seat_limit:
            window = licences.seat_window(term, today)
            used = licences.seats_used(session, client_id, window)
            span = {"term_id": term.id, "window_start": window.start.isoformat(),
                    "window_end": window.end.isoformat(), "used": used, "limit": term.seat_limit,
                    "at_limit": term.at_limit}
            crossed = [p for p in THRESHOLDS if used >= math.ceil(term.seat_limit * p / 100)]
            # One message per crossing: the highest threshold reached, and only when it is above
            # every one already sent for this window (0 to 130 % at once is one "100 %" mail).
            if crossed and crossed[-1] > _threshold_sent(session, term.id, window.start):
                enqueue(session, "licence.threshold", client_id, {**span, "percent": crossed[-1]}, now,
                        f"{_threshold_key(term.id, window.start)}{crossed[-1]}")
            if used < term.seat_limit and (today - window.start).days >= 6:
                outlook = licences.term_forecast(session, client_id, term, today)
                if outlook.over_limit:
                    enqueue(session, "licence.forecast", client_id,
                            {**span, "expected": outlook.expected, "low": outlook.low, "high": outlook.high,
                             "statement": outlook.statement},
                            now, f"forecast:{term.id}:{window.start.isoformat()}")
        session.commit()


def _threshold_key(term_id: int, window_start: dt.date) -> str:
    return f"threshold:{term_id}:{window_start.isoformat()}:"


def _threshold_sent(session: Session, term_id: int, window_start: dt.date) -> int:
    """The highest seat threshold already raised for this term's window (0: none)."""
    prefix = _threshold_key(term_id, window_start)
    keys = session.scalars(select(OutboxEvent.dedupe_key).where(OutboxEvent.dedupe_key.startswith(prefix)))
    return max((int(key[len(prefix):]) for key in keys), default=0)


def clients_with_terms(session: Session, today: dt.date) -> set[int]:
    from app.licensing.models import LicenceTerm

    return set(session.scalars(select(LicenceTerm.client_id).where(
        LicenceTerm.starts_on <= today, LicenceTerm.ends_on >= today)))


# --- delivering ------------------------------------------------------------------------


@dataclass
class Settings:
    production: bool
    smtp_url: str | None
    mail_from: str
    ca_file: str | None = None
    lease: dt.timedelta = dt.timedelta(seconds=60)

    @classmethod
    def from_config(cls, config) -> Settings:
        return cls(production=config["APP_ENV"] == "production", smtp_url=config.get("SMTP_URL"),
                   mail_from=config.get("MAIL_FROM") or "tracker@localhost", ca_file=config.get("WEBHOOK_CA_FILE"),
                   lease=dt.timedelta(seconds=config.get("OUTBOX_LEASE_SECONDS", 60)))


def _attempt(delivery: OutboxDelivery, endpoint: WebhookEndpoint | None, webhook_id: str, settings: Settings,
             now: dt.datetime) -> webhooks.PostResult:
    if delivery.channel == "email":
        try:
            mail.send(settings.smtp_url, settings.mail_from, delivery.target, delivery.subject or "", delivery.body)
        except (OSError, mail.smtplib.SMTPException, mail.MailNotConfigured) as exc:
            return webhooks.PostResult(False, f"{type(exc).__name__}: {exc}"[:300])
        return webhooks.PostResult(True, "sent")
    if endpoint is None or not endpoint.active:
        return webhooks.PostResult(False, "endpoint removed or disabled")
    return webhooks.post(endpoint.url, secret=endpoint.secret, webhook_id=webhook_id, timestamp=int(now.timestamp()),
                         body=delivery.body, production=settings.production, ca_file=settings.ca_file)


def _never() -> bool:
    return False


def deliver_due(session: Session, settings: Settings, clock: Callable[[], dt.datetime], limit: int = 20,
                should_stop: Callable[[], bool] = _never) -> int:
    """Claim due deliveries (a lease), send each, record the outcome. Returns how many were tried.

    When ``should_stop`` turns true (SIGTERM) the deliveries not yet tried are released at
    once, not left to their lease: the worker stops within one delivery's timeout.
    """
    now = clock()
    paused = select(WebhookEndpoint.id).where(WebhookEndpoint.active.is_(False))
    due = list(session.scalars(_locked(session, select(OutboxDelivery).where(
        OutboxDelivery.status == "pending", OutboxDelivery.next_attempt_at <= now,
        or_(OutboxDelivery.endpoint_id.is_(None), OutboxDelivery.endpoint_id.not_in(paused)),
    ).order_by(OutboxDelivery.next_attempt_at, OutboxDelivery.id).limit(limit))))
    candidates = [(delivery.id, delivery.event.webhook_id) for delivery in due]
    session.rollback()
    claimed = []
    table = OutboxDelivery.__table__
    for delivery_id, webhook_id in candidates:
        # The claim is one conditional UPDATE: of two workers that saw the same row due,
        # only one changes it (SQLite's driver reads outside a transaction; PostgreSQL
        # re-checks the condition after a concurrent update).
        result = session.execute(update(table).where(
            table.c.id == delivery_id, table.c.status == "pending", table.c.next_attempt_at <= now,
        ).values(next_attempt_at=now + settings.lease, attempts=table.c.attempts + 1, last_attempt_at=now))
        session.commit()
        if result.rowcount == 1:
            claimed.append((delivery_id, webhook_id))
    for tried, (delivery_id, webhook_id) in enumerate(claimed):
        if should_stop():
            _release(session, [pending for pending, _ in claimed[tried:]], now)
            return tried
        delivery = session.get(OutboxDelivery, delivery_id)
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id) if delivery.endpoint_id else None
        session.commit()  # no transaction stays open while we wait on the network
        attempt_at = clock()
        result = _attempt(delivery, endpoint, webhook_id, settings, attempt_at)
        done_at = clock()
        delivery = session.get(OutboxDelivery, delivery_id)
        delivery.last_error = None if result.ok else result.detail
        if result.ok:
            delivery.status, delivery.delivered_at = "delivered", done_at
        elif done_at - delivery.created_at >= RETRY_FOR:
            delivery.status = "dead"
            log.warning("outbox delivery %s dead after %s attempts: %s", delivery_id, delivery.attempts,
                        result.detail)
        else:
            delivery.next_attempt_at = done_at + backoff(delivery.attempts)
        session.commit()
    return len(claimed)


def replay(session: Session, delivery: OutboxDelivery, *, actor: str, now: dt.datetime) -> None:
    """Send a dead (or delivered) delivery again, same body and webhook-id, with a fresh retry budget."""
    before = {"status": delivery.status, "attempts": delivery.attempts}
    delivery.status, delivery.attempts, delivery.last_error = "pending", 0, None
    delivery.next_attempt_at = delivery.created_at = now
    audit.record(session, actor, "webhook.replay", delivery.event.client_id, before,
                 {"delivery": delivery.id, "status": "pending"})
    session.commit()


# --- the worker ----------------------------------------------------------------------------


def utc_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _release(session: Session, delivery_ids: list[int], due_at: dt.datetime) -> None:
    """Give back claims not acted on: due again now, the claim's attempt not counted."""
    table = OutboxDelivery.__table__
    session.execute(update(table).where(table.c.id.in_(delivery_ids), table.c.status == "pending")
                    .values(next_attempt_at=due_at, attempts=table.c.attempts - 1))
    session.commit()


def run_once(session: Session, settings: Settings, clock: Callable[[], dt.datetime] = utc_clock,
             sweep_all: bool = False, should_stop: Callable[[], bool] = _never,
             drift_check: Callable[[Session, dt.datetime], list] | None = None) -> int:
    """One round: fan out, check licences (and, on a sweep, ID-scheme drift), deliver.
    Returns the work done (0: idle)."""
    now = clock()
    touched = fan_out(session, now)
    if sweep_all:
        touched |= clients_with_terms(session, now.date())
        session.rollback()
    if touched:
        check_licences(session, touched, now.date(), now)
        fan_out(session, now)
    if sweep_all and drift_check is not None:
        if drift_check(session, now):
            fan_out(session, now)
    return len(touched) + deliver_due(session, settings, clock, should_stop=should_stop)


def run(app, stop: threading.Event, clock: Callable[[], dt.datetime] = utc_clock, poll_seconds: float = 1.0,
        sweep_seconds: float = 300.0, check_drift: Callable[..., list] | None = None) -> None:
    """Until ``stop`` is set (SIGTERM): work, or wait ``poll_seconds`` when idle. ``check_drift``
    (``drift.check_drift``, passed in by the command: drift sits above the outbox) runs on each sweep."""
    from app.extensions import db

    public_url = app.config.get("PUBLIC_URL", "").rstrip("/")

    def drift_check(session: Session, now: dt.datetime) -> list:
        return check_drift(session, now, review_url=lambda c: f"{public_url}/admin/clients/{c.slug}/identities")

    last_sweep = None
    while not stop.is_set():
        with app.app_context():
            settings = Settings.from_config(app.config)
            now = clock()
            sweep = last_sweep is None or (now - last_sweep).total_seconds() >= sweep_seconds
            try:
                done = run_once(db.session, settings, clock, sweep_all=sweep, should_stop=stop.is_set,
                                drift_check=drift_check if check_drift else None)
                if sweep:
                    last_sweep = now
            except Exception:
                db.session.rollback()
                log.exception("outbox round failed; trying again")
                done = 0
            finally:
                db.session.remove()
        if not done:
            stop.wait(poll_seconds)
