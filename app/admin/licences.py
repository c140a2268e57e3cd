"""Admin pages for licences that act: a client's terms, seats, forecast and alert contacts;
webhook endpoints with their deliveries, failures and a replay button.

Registered on the admin blueprint (its guard covers them: admins and CSMs).
"""

from __future__ import annotations

import datetime as dt

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired

from app.admin import bp
from app.admin.forms import TermFields, choices
from app.extensions import db
from app.licensing import licences
from app.licensing import terms as licence_terms
from app.licensing.models import LicenceTerm
from app.models import Client
from app.outbound import outbox, webhooks
from app.outbound.models import OutboxDelivery, OutboxEvent, WebhookEndpoint

WINDOW_CHOICES = [("term", "Unique learners over the whole term"), ("month", "Unique learners per calendar month"),
                  ("year", "Unique learners per calendar year")]
POLICY_CHOICES = [("record", "Record and flag (every launch recorded)"),
                  ("block", "Block new learners (remote packages only)")]


class TermForm(TermFields, FlaskForm):
    # starts_on, ends_on, seat_limit: TermFields (the client form edits the term in force with them too).
    seat_window = SelectField("Seats counted", choices=choices(WINDOW_CHOICES), default="term")
    at_limit = SelectField("At the limit", choices=choices(POLICY_CHOICES), default="record")
    after_expiry = SelectField("After the term ends", choices=choices(POLICY_CHOICES), default="record")


class ContactsForm(FlaskForm):
    alert_emails = TextAreaField("Alert contacts (one e-mail address a line)")


class EndpointForm(FlaskForm):
    url = StringField("Endpoint URL (https://)", validators=[DataRequired()])
    client = SelectField("Client", default="")
    events = StringField("Event types (space separated; empty: every type)")


class ActionForm(FlaskForm):
    """A button: only the CSRF token."""


def _client(slug: str) -> Client:
    client = db.session.scalar(select(Client).where(Client.slug == slug))
    if client is None:
        abort(404)
    return client


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


@bp.route("/clients/<slug>/licence", methods=["GET", "POST"])
def client_licence(slug):
    client = _client(slug)
    term_form, contacts_form = TermForm(prefix="term"), ContactsForm(prefix="contacts")
    if term_form.is_submitted():
        if _term_saved(term_form, lambda **fields: licence_terms.add_term(db.session, client, actor=current_user.email,
                                                                          **fields)):
            flash("Licence term added.", "success")
            return redirect(url_for("admin.client_licence", slug=slug))
        return _licence_page(client, term_form, contacts_form), 400
    return _licence_page(client, term_form, contacts_form)


def _term_saved(form: TermForm, save) -> bool:
    """Validate a term form and ``save(**fields)``; False, with the reason on the form, when refused."""
    if not form.validate():
        return False
    try:
        save(starts_on=form.starts_on.data, ends_on=form.ends_on.data, seat_limit=form.seat_limit.data,
             seat_window=form.seat_window.data, at_limit=form.at_limit.data, after_expiry=form.after_expiry.data)
    except licences.LicenceError as exc:
        db.session.rollback()
        form.starts_on.errors.append(f"Nothing changed: {exc}")
        return False
    return True


def save_term_in_force(form: TermFields, client: Client, term: LicenceTerm | None, *, actor: str) -> LicenceTerm:
    """The client form's term fields: change the term in force (its window and policy kept), or add one
    (seats over the term, record and flag) when there is none. Same checks as this page; audited; the
    caller commits. LicenceError when refused."""
    fields = {"starts_on": form.starts_on.data, "ends_on": form.ends_on.data, "seat_limit": form.seat_limit.data}
    if term is None:
        return licence_terms.add_term(db.session, client, actor=actor, commit=False, **fields)
    return licence_terms.update_term(db.session, term, actor=actor, seat_window=term.seat_window,
                                at_limit=term.at_limit, after_expiry=term.after_expiry, commit=False, **fields)


def _licence_page(client: Client, term_form: TermForm, contacts_form: ContactsForm) -> str:
    today = _today()
    term = licences.term_in_force(db.session, client.id, today)
    seats = outlook = window = None
    if term is not None:
        window = licences.seat_window(term, today)
        seats = licences.seats_used(db.session, client.id, window)
        outlook = licences.term_forecast(db.session, client.id, term, today)
    if not contacts_form.is_submitted():
        contacts_form.alert_emails.data = "\n".join(licences.contacts(db.session, client.id))
    alerts = db.session.execute(
        select(OutboxEvent.type, OutboxEvent.occurred_at, OutboxEvent.facts)
        .where(OutboxEvent.client_id == client.id, OutboxEvent.type.in_(outbox.EMAIL_TYPES))
        .order_by(OutboxEvent.id.desc()).limit(50)).all()
    return render_template("admin/licence.html", client=client, terms=licence_terms.terms(db.session, client.id),
                           term=term, window=window, seats=seats, outlook=outlook, term_form=term_form,
                           contacts_form=contacts_form, action_form=ActionForm(), alerts=alerts, today=today)


@bp.post("/clients/<slug>/licence/contacts")
def client_licence_contacts(slug):
    client = _client(slug)
    form = ContactsForm(prefix="contacts")
    if not form.validate_on_submit():
        abort(400)
    try:
        licences.set_contacts(db.session, client, (form.alert_emails.data or "").splitlines(),
                              actor=current_user.email)
    except licences.LicenceError as exc:
        db.session.rollback()
        form.alert_emails.errors.append(f"Nothing changed: {exc}")
        return _licence_page(client, TermForm(prefix="term", formdata=None), form), 400
    flash("Alert contacts saved.", "success")
    return redirect(url_for("admin.client_licence", slug=slug))


@bp.post("/clients/<slug>/licence/renew")
def client_licence_renew(slug):
    client = _client(slug)
    if not ActionForm().validate_on_submit():
        abort(400)
    existing = licence_terms.terms(db.session, client.id)
    if not existing:
        flash("There is no term to renew; add one first.", "error")
    else:
        try:
            term = licence_terms.renew_term(db.session, client, existing[-1], actor=current_user.email)
            flash(f"Renewed: {term.starts_on} to {term.ends_on}.", "success")
        except licences.LicenceError as exc:
            flash(str(exc), "error")
    return redirect(url_for("admin.client_licence", slug=slug))


def _term(client: Client, term_id: int) -> LicenceTerm:
    term = db.session.get(LicenceTerm, term_id)
    if term is None or term.client_id != client.id:
        abort(404)
    return term


@bp.route("/clients/<slug>/licence/terms/<int:term_id>", methods=["GET", "POST"])
def client_licence_term(slug, term_id):
    """Edit one term: dates, seats, how they are counted, the policy (audited)."""
    client = _client(slug)
    term = _term(client, term_id)
    form = TermForm(prefix="term", obj=term)
    if form.is_submitted():
        if _term_saved(form, lambda **fields: licence_terms.update_term(db.session, term, actor=current_user.email,
                                                                        **fields)):
            flash("Licence term saved.", "success")
            return redirect(url_for("admin.client_licence", slug=slug))
        return render_template("admin/licence_term.html", client=client, term=term, form=form,
                               action_form=ActionForm()), 400
    return render_template("admin/licence_term.html", client=client, term=term, form=form, action_form=ActionForm())


@bp.post("/clients/<slug>/licence/terms/<int:term_id>/remove")
def client_licence_term_remove(slug, term_id):
    """Delete a term (audited); the usage it covered stays counted."""
    client = _client(slug)
    term = _term(client, term_id)
    if not ActionForm().validate_on_submit():
        abort(400, description="The form expired or did not come from this site; nothing was removed.")
    span = f"{term.starts_on} to {term.ends_on}"
    licence_terms.remove_term(db.session, term, actor=current_user.email)
    flash(f"Licence term {span} removed.", "success")
    return redirect(url_for("admin.client_licence", slug=slug))


@bp.route("/webhooks", methods=["GET", "POST"])
def webhooks_list():
    form = EndpointForm()
    clients = list(db.session.scalars(select(Client).order_by(Client.name)))
    form.client.choices = choices([("", "Every client")] + [(c.slug, f"{c.name} ({c.slug})") for c in clients])
    secret = None
    if form.validate_on_submit():
        client = _client(form.client.data) if form.client.data else None
        try:
            endpoint = webhooks.add_endpoint(db.session, url=form.url.data, client=client,
                                             event_types=(form.events.data or "").split(), actor=current_user.email,
                                             production=current_app.config["APP_ENV"] == "production")
            secret = endpoint.secret
        except webhooks.EndpointError as exc:
            form.url.errors.append(str(exc))
    counts: dict[int, dict[str, int]] = {}
    for endpoint_id, status, n in db.session.execute(
            select(OutboxDelivery.endpoint_id, OutboxDelivery.status, func.count())
            .where(OutboxDelivery.endpoint_id.is_not(None))
            .group_by(OutboxDelivery.endpoint_id, OutboxDelivery.status)):
        counts.setdefault(endpoint_id, {})[status] = n
    endpoints = list(db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))
    # E-mail alerts not (yet) sent: failing or dead, each with a replay button.
    mails = list(db.session.scalars(select(OutboxDelivery).where(
        OutboxDelivery.channel == "email", OutboxDelivery.status != "delivered", OutboxDelivery.attempts > 0,
    ).order_by(OutboxDelivery.id.desc()).limit(100)))
    page = render_template("admin/webhooks.html", form=form, endpoints=endpoints, counts=counts, secret=secret,
                           event_types=webhooks.EVENT_TYPES, mails=mails, action_form=ActionForm())
    return page, (400 if form.is_submitted() and secret is None else 200)


# GET /webhooks/<id> (the deliveries page) is in webhook_deliveries.py.


@bp.post("/webhooks/<int:endpoint_id>/active")
def webhook_active(endpoint_id):
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) or abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    active = request.form.get("active") == "1"
    webhooks.set_endpoint_active(db.session, endpoint, active, actor=current_user.email)
    flash("Endpoint resumed: waiting deliveries go out now." if active else
          "Endpoint paused: nothing is sent to it; its events wait until it is resumed.", "success")
    return redirect(url_for("admin.webhook_detail", endpoint_id=endpoint.id))


@bp.post("/webhooks/deliveries/<int:delivery_id>/replay")
def webhook_replay(delivery_id):
    delivery = db.session.get(OutboxDelivery, delivery_id) or abort(404)
    if not ActionForm().validate_on_submit():
        abort(400)
    outbox.replay(db.session, delivery, actor=current_user.email, now=dt.datetime.now(dt.UTC))
    flash("Delivery queued again (same body and webhook-id).", "success")
    if delivery.endpoint_id:
        return redirect(url_for("admin.webhook_detail", endpoint_id=delivery.endpoint_id))
    return redirect(url_for("admin.webhooks_list"))
