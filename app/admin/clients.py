"""Admin: the client list, a client's overview, creating and editing clients, switching anonymisation."""

from __future__ import annotations

import datetime as dt

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from wtforms.validators import Optional

from app import audit as audit_service
from app.admin import actor, bp, client_or_404, clients_changed
from app.admin.forms import (
    NO_CSM_LABEL,
    ClientForm,
    ModeForm,
    NewClientForm,
    PackageForm,
    RotateKeyForm,
    choices,
    local_http,
    origin_lines,
    placeholder_lines,
)
from app.admin.keys import package_list
from app.admin.licences import save_term_in_force
from app.billing.figures import unique_users
from app.clients import services as client_service
from app.extensions import db
from app.identity.placeholders import policy_entries
from app.identity.student_ids import PseudonymParams
from app.ingest import golive
from app.learners import anonymisation
from app.licensing import licences, periods
from app.licensing import terms as licence_terms
from app.models import Client, utcnow

# Pseudonymising costs one Argon2id per learner (~27 ms at the default cost): more than
# this and the page request would outlive gunicorn's timeout, so the CLI does it instead.
WEB_PSEUDONYMISE_LIMIT = 500


def _status(client: Client, last_beacon: dt.datetime | None, warnings: int) -> dict:
    today = utcnow().date()
    period = periods.current_period(client, today)
    users = unique_users(db.session, client.id, period.start, period.end)
    term = licences.term_in_force(db.session, client.id, today)
    limit = term.seat_limit if term is not None else None
    over = limit is not None and users > limit
    return {"period": period, "users": users, "limit": limit, "over": over, "last_beacon": last_beacon,
            "warnings": warnings, "term": term}


@bp.get("/")
def clients():
    search = (request.args.get("q") or "")[:200]
    show = request.args.get("show") or "all"
    if show not in client_service.CLIENT_FILTERS:
        abort(400, description=f"'show' must be one of {', '.join(client_service.CLIENT_FILTERS)}.")
    rows = client_service.all_clients(db.session, search=search, show=show)
    last = client_service.last_beacons(db.session)
    warnings = golive.warnings_by_client(db.session, current_app.extensions["pseudonymiser"], rows)
    statuses = {c.id: _status(c, last.get(c.id), warnings[c.id]) for c in rows}
    return render_template("admin/clients.html", clients=rows, statuses=statuses, search=search, show=show,
                           filters=client_service.CLIENT_FILTERS, any_clients=bool(rows) or bool(search)
                           or show != "all" or client_service.find_any_client(db.session))


def _csm_choices(form, client: Client | None) -> None:
    """The CSM select: none, or an active csm or admin user (the client's current CSM kept listed even
    when deactivated since, so the form does not drop them unasked)."""
    people = client_service.csm_candidates(db.session)
    current = client.csm if client is not None else None
    if current is not None and current not in people:
        people.append(current)
    form.csm.choices = choices([("", NO_CSM_LABEL)] + [
        (u.email, f"{u.email} ({u.role}{'' if u.active else ', deactivated'})") for u in people])
    if not form.is_submitted():
        form.csm.data = current.email if current is not None else ""


def _chosen_csm(form, client: Client | None):
    """The CSM the form asks for: KEEP when unchanged or not posted (an older page, a script)."""
    if "csm" not in request.form:
        return client_service.KEEP
    chosen = (form.csm.data or "").strip().casefold()
    current = client.csm if client is not None else None
    if current is not None and chosen == current.email.casefold():
        return client_service.KEEP
    return client_service.find_csm(db.session, chosen)


@bp.route("/clients/new", methods=["GET", "POST"])
def client_new():
    form = NewClientForm()
    _csm_choices(form, None)
    duplicate = False
    if form.validate_on_submit():
        config = current_app.config
        try:
            csm = _chosen_csm(form, None)
            client, key = licence_terms.create_client_with_term(
                db.session, name=form.name.data, actor=actor(), anonymised=form.anonymised.data,
                licence=form.licence.data, origins=origin_lines(form.origins.data),
                seat_limit=form.seat_limit.data, licence_start=form.licence_start.data,
                licence_end=form.licence_end.data, active=form.active.data, local_http=local_http(),
                confirm_duplicate=form.confirm_duplicate.data,
                csm=None if csm is client_service.KEEP else csm,
                params=PseudonymParams(config["PSEUDONYM_TIME_COST"], config["PSEUDONYM_MEMORY_KIB"],
                                       config["PSEUDONYM_PARALLELISM"]),
            )
        except client_service.DuplicateName as exc:
            db.session.rollback()
            form.name.errors.append(str(exc))
            duplicate = True
        except client_service.CsmError as exc:
            db.session.rollback()
            form.csm.errors.append(str(exc))
        except client_service.ClientError as exc:
            db.session.rollback()
            form.name.errors.append(str(exc))
        else:
            clients_changed()
            flash(f"Client {client.name} ({client.slug}) created.", "success")
            return render_template("admin/key_shown.html", client=client, key=key, new_client=True)
    return render_template("admin/client_form.html", form=form, client=None, duplicate=duplicate), \
        400 if form.errors else 200


@bp.get("/clients/<slug>")
def client_detail(slug: str):
    client = client_or_404(slug)
    report = golive.health_report(db.session, current_app.extensions["pseudonymiser"], client)
    status = _status(client, client_service.last_beacon_at(db.session, client), len(report.flags))
    return render_template(
        "admin/client_detail.html", client=client, keys=client_service.client_keys(db.session, client),
        now=utcnow(), status=status, rotate_form=RotateKeyForm(), package_form=PackageForm(),
        **package_list(client),
        audit=audit_service.entries(db.session, client_id=client.id, limit=10)[0],
    )


@bp.route("/clients/<slug>/edit", methods=["GET", "POST"])
def client_edit(slug: str):
    client = client_or_404(slug)
    term = licences.term_in_force(db.session, client.id, utcnow().date())
    form = ClientForm(obj=client)
    _csm_choices(form, client)
    duplicate = False
    if request.method == "GET":
        form.origins.data = "\n".join(client.allowed_origins or [])
        form.placeholder_ids.data = "\n".join(policy_entries(client.placeholder_ids))
        if term is not None:
            form.term.form.process(None, obj=term)
    save_term = request.method == "POST" and _term_posted(term)
    if not save_term:
        # No term in force and its fields left empty (or a form without them): nothing to check or save.
        for term_field in form.term.form:
            term_field.validators = [Optional()]
    if form.validate_on_submit():
        try:
            client_service.update_client(
                db.session, client, actor=actor(), name=form.name.data, active=form.active.data,
                licence=form.licence.data, origins=origin_lines(form.origins.data), local_http=local_http(),
                confirm_duplicate=form.confirm_duplicate.data, csm=_chosen_csm(form, client), commit=False,
                # A form without the field (an older page, a script) leaves the list alone.
                placeholder_ids=(placeholder_lines(form.placeholder_ids.data)
                                 if "placeholder_ids" in request.form else None))
            if save_term:
                save_term_in_force(form.term.form, client, term, actor=actor())
            db.session.commit()
        except client_service.DuplicateName as exc:
            db.session.rollback()
            form.name.errors.append(str(exc))
            duplicate = True
        except client_service.CsmError as exc:
            db.session.rollback()
            form.csm.errors.append(str(exc))
        except client_service.ClientError as exc:
            db.session.rollback()
            form.name.errors.append(str(exc))
        except licences.LicenceError as exc:
            db.session.rollback()
            form.term.form.starts_on.errors.append(f"Nothing changed: {exc}")
        else:
            clients_changed()
            flash("Client settings saved.", "success")
            return redirect(url_for("admin.client_detail", slug=client.slug))
    return render_template("admin/client_form.html", form=form, client=client, duplicate=duplicate,
                           term=term), 400 if form.errors else 200


def _term_posted(term) -> bool:
    """Did the client form post term fields to save: always for a term in force, else when any is filled in."""
    names = ("term-starts_on", "term-ends_on", "term-seat_limit")
    if not any(name in request.form for name in names):
        return False
    return term is not None or any((request.form.get(name) or "").strip() for name in names)


@bp.route("/clients/<slug>/mode", methods=["GET", "POST"])
def client_mode(slug: str):
    client = client_or_404(slug)
    form = ModeForm()
    plain = anonymisation.plain_learner_count(db.session, client)
    too_many = not client.anonymised and plain > WEB_PSEUDONYMISE_LIMIT
    if form.validate_on_submit():
        if form.confirm_name.data.strip() != client.name:
            form.confirm_name.errors.append("That is not the client's name; nothing was changed.")
        elif too_many:
            form.confirm_name.errors.append("Too many learners to pseudonymise within one page request; "
                                            "ask an operator to run the command shown above.")
        else:
            try:
                done = anonymisation.switch_mode(db.session, current_app.extensions["pseudonymiser"], client,
                                                 anonymised=not client.anonymised, actor=actor())
            except client_service.ClientError as exc:
                db.session.rollback()
                form.confirm_name.errors.append(f"Nothing was changed: {exc}.")
                return _mode_page(client, form, plain, too_many), 400
            clients_changed()
            if client.anonymised:
                flash(f"{client.name} is now anonymised: {done['learners_pseudonymised']} learner(s) "
                      f"pseudonymised, {done['learners_merged']} merged.", "success")
            else:
                flash(f"{client.name} now stores learners verbatim; returning learners are linked to "
                      "their pseudonyms.", "success")
            return redirect(url_for("admin.client_detail", slug=client.slug))
    return _mode_page(client, form, plain, too_many), 400 if form.errors else 200


def _mode_page(client: Client, form: ModeForm, plain: int, too_many: bool) -> str:
    return render_template("admin/mode.html", client=client, form=form,
                           stored=anonymisation.stored_learner_count(db.session, client), plain=plain,
                           too_many=too_many, sweep_form=ModeForm(formdata=None))


@bp.post("/clients/<slug>/pseudonymise-remaining")
def client_pseudonymise_remaining(slug: str):
    """Learners written verbatim by a process that still had the old mode cached (a few seconds)."""
    client = client_or_404(slug)
    if not client.anonymised:
        abort(409, "This client stores learners verbatim; switch it to anonymised first.")
    done = anonymisation.pseudonymise_remaining(db.session, current_app.extensions["pseudonymiser"], client,
                                                actor=actor())
    flash(f"{done['learners_pseudonymised'] + done['learners_merged']} remaining learner(s) pseudonymised.",
          "success")
    return redirect(url_for("admin.client_mode", slug=client.slug))
