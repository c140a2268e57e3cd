"""Commands for licences that act: terms, alert contacts, webhook endpoints, the outbox worker.

``flask --app wsgi licence ...``, ``webhook ...``, ``outbox run``; registered by ``cli.register``.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading

import click
from flask import Flask, current_app
from sqlalchemy import func, select
from sqlalchemy.orm.attributes import flag_modified

from app.billing import drift
from app.cli.common import CLI_ACTOR, emit, find_client
from app.extensions import db
from app.licensing import licences
from app.licensing import terms as licence_terms
from app.licensing.models import AT_LIMIT, SEAT_WINDOWS
from app.outbound import outbox, webhooks
from app.outbound.models import OutboxDelivery, WebhookEndpoint

licence_group = click.Group("licence", help="Licence terms and alert contacts of a client.")
webhook_group = click.Group("webhook", help="Webhook endpoints that receive signed events.")
outbox_group = click.Group("outbox", help="The worker that delivers webhooks and e-mails.")


def set_alert_emails(client, emails) -> list[str]:
    """For ``client create --alert-email``."""
    try:
        return licences.set_contacts(db.session, client, list(emails), actor=CLI_ACTOR)
    except licences.LicenceError as exc:
        raise click.ClickException(f"client created, but its alert contacts were not: {exc}") from None


@licence_group.command("add-term")
@click.option("--client", "slug", required=True)
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), required=True)
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), required=True)
@click.option("--seat-limit", type=click.IntRange(min=0), default=None)
@click.option("--count-per", "seat_window", type=click.Choice(SEAT_WINDOWS), default="term", show_default=True,
              help="Unique learners per term, or per calendar month or year within it.")
@click.option("--at-limit", type=click.Choice(AT_LIMIT), default="record", show_default=True,
              help="record: record and flag; block: remote packages refuse new learners.")
@click.option("--after-expiry", type=click.Choice(AT_LIMIT), default="record", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def add_term(slug, start, end, seat_limit, seat_window, at_limit, after_expiry, as_json):
    """Give a client a licence term (terms never overlap)."""
    client = find_client(slug)
    try:
        term = licence_terms.add_term(db.session, client, actor=CLI_ACTOR, starts_on=start.date(), ends_on=end.date(),
                                      seat_limit=seat_limit, seat_window=seat_window, at_limit=at_limit,
                                      after_expiry=after_expiry)
    except licences.LicenceError as exc:
        raise click.ClickException(str(exc)) from None
    emit(as_json, term.as_dict(), f"Term {term.starts_on} to {term.ends_on} added to {client.slug}.")


@licence_group.command("renew")
@click.option("--client", "slug", required=True)
@click.option("--seat-limit", type=click.IntRange(min=0), default=None, help="A new limit; default: the same.")
@click.option("--json", "as_json", is_flag=True)
def renew(slug, seat_limit, as_json):
    """Add the next term after the client's latest one (same length and settings)."""
    client = find_client(slug)
    existing = licence_terms.terms(db.session, client.id)
    if not existing:
        raise click.ClickException(f"{client.slug} has no licence term to renew; add one with licence add-term")
    try:
        term = licence_terms.renew_term(db.session, client, existing[-1], actor=CLI_ACTOR, seat_limit=seat_limit)
    except licences.LicenceError as exc:
        raise click.ClickException(str(exc)) from None
    emit(as_json, term.as_dict(), f"Renewed: {term.starts_on} to {term.ends_on}.")


@licence_group.command("show")
@click.option("--client", "slug", required=True)
@click.option("--json", "as_json", is_flag=True)
def show(slug, as_json):
    """Terms, the term in force with seats used and the forecast, and the alert contacts."""
    client = find_client(slug)
    today = dt.datetime.now(dt.UTC).date()
    data = {"client": client.slug, "terms": [t.as_dict() for t in licence_terms.terms(db.session, client.id)],
            "alert_emails": licences.contacts(db.session, client.id), "in_force": None}
    term = licences.term_in_force(db.session, client.id, today)
    if term is not None:
        window = licences.seat_window(term, today)
        outlook = licences.term_forecast(db.session, client.id, term, today)
        data["in_force"] = {**term.as_dict(), "window_start": window.start.isoformat(),
                            "window_end": window.end.isoformat(),
                            "seats_used": licences.seats_used(db.session, client.id, window),
                            "forecast": {"expected": outlook.expected, "low": outlook.low, "high": outlook.high,
                                         "statement": outlook.statement}}
    text = "\n".join(f"{t['starts_on']} to {t['ends_on']}: {term_seats(t['seat_limit'], t['seat_window'])}"
                      for t in data["terms"]) or "No licence terms."
    emit(as_json, data, text)


def term_seats(limit: int | None, window: str) -> str:
    """A term's seats in words: '10 seats per term', or 'no seat limit' (never 'None seats')."""
    return "no seat limit" if limit is None else f"{limit} seat{'' if limit == 1 else 's'} per {window}"


@licence_group.command("contacts")
@click.option("--client", "slug", required=True)
@click.option("--alert-email", "emails", multiple=True, help="Every contact (repeat); none clears the list.")
@click.option("--json", "as_json", is_flag=True)
def contacts(slug, emails, as_json):
    """Set the client's contacts for licence alerts."""
    client = find_client(slug)
    try:
        kept = licences.set_contacts(db.session, client, list(emails), actor=CLI_ACTOR)
    except licences.LicenceError as exc:
        raise click.ClickException(str(exc)) from None
    emit(as_json, {"client": client.slug, "alert_emails": kept}, ", ".join(kept) or "No alert contacts.")


@webhook_group.command("add")
@click.option("--url", required=True, help="https:// (http:// only to loopback in development).")
@click.option("--client", "slug", default=None, help="Only this client's events; default: every client.")
@click.option("--event", "events", multiple=True, type=click.Choice(webhooks.EVENT_TYPES),
              help="An event type (repeat); default: every type.")
@click.option("--json", "as_json", is_flag=True)
def webhook_add(url, slug, events, as_json):
    """Register an endpoint and print its signing secret (shown once)."""
    client = find_client(slug) if slug else None
    try:
        endpoint = webhooks.add_endpoint(db.session, url=url, client=client, event_types=list(events),
                                         actor=CLI_ACTOR, production=current_app.config["APP_ENV"] == "production")
    except webhooks.EndpointError as exc:
        raise click.ClickException(str(exc)) from None
    data = {"id": endpoint.id, "secret": endpoint.secret, "url": endpoint.url,
            "client": client.slug if client else None, "events": endpoint.event_types}
    emit(as_json, data, f"Endpoint {endpoint.id} added. Signing secret (shown once): {endpoint.secret}")


@webhook_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def webhook_list(as_json):
    """Every endpoint: id, URL, client, event types, active or paused (never the secret)."""
    rows = [{"id": e.id, "url": e.url, "client": e.client.slug if e.client else None, "events": e.event_types,
             "active": e.active} for e in db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id))]
    lines = [f"{r['id']}  {'active' if r['active'] else 'PAUSED'}  {r['url']}  {r['client'] or 'every client'}  "
             f"{', '.join(r['events']) or 'every type'}" for r in rows]
    emit(as_json, rows, "\n".join(lines) or "No endpoints.")


def _set_active(endpoint_id: int, active: bool) -> None:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise click.ClickException(f"no webhook endpoint {endpoint_id} (see: flask --app wsgi webhook list)")
    changed = webhooks.set_endpoint_active(db.session, endpoint, active, actor=CLI_ACTOR)
    state = "resumed" if active else "paused"
    click.echo(f"Endpoint {endpoint_id} {state}." if changed else f"Endpoint {endpoint_id} was already {state}.")


@webhook_group.command("pause")
@click.argument("endpoint_id", type=int)
def webhook_pause(endpoint_id):
    """Stop sending to an endpoint; its events wait (resume sends them)."""
    _set_active(endpoint_id, False)


@webhook_group.command("resume")
@click.argument("endpoint_id", type=int)
def webhook_resume(endpoint_id):
    """Send to a paused endpoint again, starting with what waited."""
    _set_active(endpoint_id, True)


@outbox_group.command("run")
@click.option("--poll", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds to wait when there is nothing to do.")
def outbox_run(poll):
    """Deliver webhooks and e-mails until SIGTERM (several may run at once)."""
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    app = current_app._get_current_object()
    click.echo("outbox worker started", err=True)
    outbox.run(app, stop, poll_seconds=poll, check_drift=drift.check_drift)
    click.echo("outbox worker stopped", err=True)


@outbox_group.command("status")
@click.option("--json", "as_json", is_flag=True)
def outbox_status(as_json):
    """Deliveries by state."""
    rows = dict(db.session.execute(select(OutboxDelivery.status, func.count()).group_by(OutboxDelivery.status)).all())
    emit(as_json, rows, "\n".join(f"{k}\t{v}" for k, v in sorted(rows.items())) or "No deliveries.")


def register(app: Flask) -> None:
    for group in (licence_group, webhook_group, outbox_group):
        app.cli.add_command(group)


@webhook_group.command("reencrypt")
def webhook_reencrypt():
    """Encrypt every endpoint's signing secret again with the first key of WEBHOOK_SECRET_KEYS (key rotation)."""
    endpoints = list(db.session.scalars(select(WebhookEndpoint)))
    for endpoint in endpoints:
        flag_modified(endpoint, "secret")  # decrypted with any key on load, written with the first
    db.session.commit()
    click.echo(f"Re-encrypted {len(endpoints)} endpoint secret(s) with the first key; older keys may now be "
               "removed from WEBHOOK_SECRET_KEYS.")
