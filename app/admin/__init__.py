"""The staff admin: clients, anonymisation, keys, packages, the go-live check, audit log, staff users.

Guarded once for every route (``_guard``): signed-in ``admin`` and ``csm``
users only; ``/admin/staff`` for ``admin`` alone. Client users get 404 (the
admin does not exist for them), billing staff 403. Views are thin: form, then
a service that audits in the same transaction, then a redirect.
"""

from __future__ import annotations

import datetime as dt
import io

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask_login import current_user
from sqlalchemy import func, select

from ..extensions import db, login_manager
from ..identity import PseudonymParams
from ..models import AuditEntry, Client, ClientKey, Event, Learner, PackageIssue, StaffUser, utcnow
from ..services import packages as package_service
from ..services import anonymisation, golive, periods
from ..services import clients as client_service
from ..services import staff as staff_service
from ..services.billing import unique_users
from .forms import (
    ClientForm,
    ModeForm,
    NewClientForm,
    PackageForm,
    RotateKeyForm,
    StaffChangeForm,
    StaffForm,
    choices,
    origin_lines,
)

bp = Blueprint("admin", __name__, url_prefix="/admin")

ADMIN_ROLES = ("admin", "csm")
ADMIN_ONLY_PREFIX = "admin.staff"
# Pseudonymising costs one Argon2id per learner (~27 ms at the default cost): more than
# this and the page request would outlive gunicorn's timeout, so the CLI does it instead.
WEB_PSEUDONYMISE_LIMIT = 500


@bp.before_request
def _guard():
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    if current_user.role == "client":
        abort(404)
    if current_user.role not in ADMIN_ROLES:
        abort(403, "The admin is for customer success managers and admins.")
    if (request.endpoint or "").startswith(ADMIN_ONLY_PREFIX) and current_user.role != "admin":
        abort(403, "Only admins manage staff users.")


@bp.after_request
def _no_store(response: Response) -> Response:
    # Admin pages can carry a key shown once or learner details: keep them out of caches.
    response.headers["Cache-Control"] = "no-store"
    return response


def _client(slug: str) -> Client:
    client = db.session.scalar(select(Client).where(Client.slug == slug))
    if client is None:
        abort(404)
    return client


def _actor() -> str:
    return current_user.email


def _clients_changed() -> None:
    """This process sees the change at once; others within CLIENT_CACHE_SECONDS."""
    current_app.extensions["client_directory"].clear()


def _today() -> dt.date:
    return utcnow().date()


def _status(client: Client, last_beacon: dt.datetime | None, warnings: int) -> dict:
    period = periods.current_period(client, _today())
    users = unique_users(db.session, client.id, period.start, period.end)
    over = client.seat_limit is not None and users > client.seat_limit
    return {"period": period, "users": users, "over": over, "last_beacon": last_beacon,
            "warnings": warnings}


# --- clients -----------------------------------------------------------------


@bp.get("/")
def clients():
    rows = list(db.session.scalars(select(Client).order_by(Client.name)))
    last = dict(db.session.execute(
        select(Event.client_id, func.max(Event.received_at)).group_by(Event.client_id)).all())
    warnings = golive.warnings_by_client(db.session, current_app.extensions["pseudonymiser"], rows)
    statuses = {c.id: _status(c, _aware(last.get(c.id)), warnings[c.id]) for c in rows}
    return render_template("admin/clients.html", clients=rows, statuses=statuses)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # max() over a column skips the type's result processing on some databases.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


@bp.route("/clients/new", methods=["GET", "POST"])
def client_new():
    form = NewClientForm()
    if form.validate_on_submit():
        config = current_app.config
        try:
            client, key = client_service.create_client(
                db.session, name=form.name.data, actor=_actor(), anonymised=form.anonymised.data,
                licence=form.licence.data, origins=origin_lines(form.origins.data),
                seat_limit=form.seat_limit.data, licence_start=form.licence_start.data,
                licence_end=form.licence_end.data, active=form.active.data,
                params=PseudonymParams(config["PSEUDONYM_TIME_COST"], config["PSEUDONYM_MEMORY_KIB"],
                                       config["PSEUDONYM_PARALLELISM"]),
            )
        except client_service.ClientError as exc:
            db.session.rollback()
            form.name.errors.append(str(exc))
        else:
            _clients_changed()
            flash(f"Client {client.name} created.", "success")
            return render_template("admin/key_shown.html", client=client, key=key, new_client=True)
    return render_template("admin/client_form.html", form=form, client=None), 400 if form.errors else 200


@bp.get("/clients/<slug>")
def client_detail(slug: str):
    client = _client(slug)
    keys = list(db.session.scalars(select(ClientKey).where(ClientKey.client_id == client.id)
                                   .order_by(ClientKey.created_at.desc())))
    last = _aware(db.session.scalar(select(func.max(Event.received_at)).where(Event.client_id == client.id)))
    report = golive.health_report(db.session, current_app.extensions["pseudonymiser"], client)
    return render_template(
        "admin/client_detail.html", client=client, keys=keys, now=utcnow(),
        status=_status(client, last, len(report.flags)), rotate_form=RotateKeyForm(),
        package_form=PackageForm(), packages=_packages(client),
        audit=_audit_entries(client.id, limit=10),
    )


@bp.route("/clients/<slug>/edit", methods=["GET", "POST"])
def client_edit(slug: str):
    client = _client(slug)
    form = ClientForm(obj=client)
    if request.method == "GET":
        form.origins.data = "\n".join(client.allowed_origins or [])
    if form.validate_on_submit():
        try:
            client_service.update_client(
                db.session, client, actor=_actor(), name=form.name.data, active=form.active.data,
                licence=form.licence.data, seat_limit=form.seat_limit.data,
                licence_start=form.licence_start.data, licence_end=form.licence_end.data,
                origins=origin_lines(form.origins.data))
        except client_service.ClientError as exc:
            db.session.rollback()
            form.name.errors.append(str(exc))
        else:
            _clients_changed()
            flash("Client settings saved.", "success")
            return redirect(url_for("admin.client_detail", slug=client.slug))
    return render_template("admin/client_form.html", form=form, client=client), 400 if form.errors else 200


@bp.post("/clients/<slug>/rotate-key")
def client_rotate_key(slug: str):
    client = _client(slug)
    form = RotateKeyForm()
    if not form.validate_on_submit():
        for error in form.grace_hours.errors:
            flash(f"Key not rotated: {error}", "error")
        return redirect(url_for("admin.client_detail", slug=client.slug))
    key = client_service.rotate_key(db.session, client, actor=_actor(),
                                    grace=dt.timedelta(hours=form.grace_hours.data))
    _clients_changed()
    flash(f"New key issued. Keys issued before keep working for {form.grace_hours.data} hour(s).", "success")
    return render_template("admin/key_shown.html", client=client, key=key, new_client=False)


@bp.route("/clients/<slug>/mode", methods=["GET", "POST"])
def client_mode(slug: str):
    client = _client(slug)
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
                                                 anonymised=not client.anonymised, actor=_actor())
            except client_service.ClientError as exc:
                db.session.rollback()
                form.confirm_name.errors.append(f"Nothing was changed: {exc}.")
                return _mode_page(client, form, plain, too_many), 400
            _clients_changed()
            if client.anonymised:
                flash(f"{client.name} is now anonymised: {done['learners_pseudonymised']} learner(s) "
                      f"pseudonymised, {done['learners_merged']} merged.", "success")
            else:
                flash(f"{client.name} now stores learners verbatim; returning learners are linked to "
                      "their pseudonyms.", "success")
            return redirect(url_for("admin.client_detail", slug=client.slug))
    return _mode_page(client, form, plain, too_many), 400 if form.errors else 200


def _mode_page(client: Client, form: ModeForm, plain: int, too_many: bool) -> str:
    stored = db.session.scalar(select(func.count()).select_from(Learner).where(Learner.client_id == client.id)) or 0
    return render_template("admin/mode.html", client=client, form=form, stored=stored, plain=plain,
                           too_many=too_many, sweep_form=ModeForm(formdata=None))


@bp.post("/clients/<slug>/pseudonymise-remaining")
def client_pseudonymise_remaining(slug: str):
    """Learners written verbatim by a process that still had the old mode cached (a few seconds)."""
    client = _client(slug)
    if not client.anonymised:
        abort(409, "This client stores learners verbatim; switch it to anonymised first.")
    done = anonymisation.pseudonymise_remaining(db.session, current_app.extensions["pseudonymiser"], client,
                                                actor=_actor())
    flash(f"{done['learners_pseudonymised'] + done['learners_merged']} remaining learner(s) pseudonymised.",
          "success")
    return redirect(url_for("admin.client_mode", slug=client.slug))


# --- packages -------------------------------------------------------------------


def _packages(client: Client) -> list[PackageIssue]:
    return list(db.session.scalars(select(PackageIssue).where(PackageIssue.client_id == client.id)
                                   .order_by(PackageIssue.created_at.desc())))


@bp.route("/clients/<slug>/packages", methods=["GET", "POST"])
def client_packages(slug: str):
    client = _client(slug)
    form = PackageForm()
    if form.validate_on_submit():
        upload = form.content.data
        content = upload.stream if upload and getattr(upload, "filename", "") else None
        try:
            data, built = package_service.package_bytes(
                db.session, client=client, course_title=form.course_title.data,
                scorm_version=form.scorm_version.data, content=content,
                mode=form.mode.data if client.tracked else "deployed",
                server_url=current_app.config["PUBLIC_URL"], issued_by=_actor())
        except package_service.PackageError as exc:
            db.session.rollback()
            form.content.errors.append(str(exc))
        else:
            return send_file(io.BytesIO(data), mimetype="application/zip", as_attachment=True,
                             download_name=f"{client.slug}-{built.filename}")
    return render_template("admin/packages.html", client=client, form=form, packages=_packages(client)), \
        400 if form.errors else 200


# --- go-live check ------------------------------------------------------------------


@bp.get("/clients/<slug>/go-live")
def client_golive(slug: str):
    client = _client(slug)
    report = golive.health_report(db.session, current_app.extensions["pseudonymiser"], client)
    beacons = golive.recent_beacons(db.session, client)
    return render_template("admin/golive.html", client=client, report=report, beacons=beacons,
                           last_id=max((b["id"] for b in beacons), default=0))


@bp.get("/clients/<slug>/go-live/beacons.json")
def client_golive_beacons(slug: str):
    client = _client(slug)
    after = request.args.get("after", "0")
    after_id = int(after) if after.isdigit() else 0
    beacons = golive.recent_beacons(db.session, client, after_id=after_id)  # oldest first
    return jsonify({"beacons": beacons, "last_id": max([b["id"] for b in beacons] + [after_id])})


# --- audit log ------------------------------------------------------------------------


def _audit_entries(client_id: int | None, limit: int = 200) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc()).limit(limit)
    if client_id is not None:
        query = query.where(AuditEntry.client_id == client_id)
    return list(db.session.scalars(query))


@bp.get("/audit")
def audit_log():
    all_clients = list(db.session.scalars(select(Client).order_by(Client.name)))
    slug = request.args.get("client") or ""
    selected = None
    if slug:
        selected = next((c for c in all_clients if c.slug == slug), None)
        if selected is None:
            abort(404)
    entries = _audit_entries(selected.id if selected else None)
    names = {c.id: c.name for c in all_clients}
    return render_template("admin/audit.html", entries=entries, clients=all_clients, selected=selected,
                           names=names)


# --- staff users (admin only: see _guard) --------------------------------------------------


def _client_choices(all_clients: list[Client]):
    return choices([("", "—")] + [(c.slug, c.name) for c in all_clients])


@bp.route("/staff", methods=["GET", "POST"])
def staff():
    all_clients = list(db.session.scalars(select(Client).order_by(Client.name)))
    form = StaffForm()
    form.client.choices = _client_choices(all_clients)
    if form.validate_on_submit():
        client = next((c for c in all_clients if c.slug == form.client.data), None)
        try:
            user = staff_service.create_staff(db.session, email=form.email.data, role=form.role.data,
                                              password=form.password.data, actor=_actor(), client=client)
        except staff_service.StaffError as exc:
            db.session.rollback()
            (form.client if "client" in str(exc) else form.email).errors.append(str(exc).replace("--client SLUG",
                                                                                                 "a client"))
        else:
            flash(f"Staff user {user.email} created.", "success")
            return redirect(url_for("admin.staff"))
    users = list(db.session.scalars(select(StaffUser).order_by(StaffUser.role, StaffUser.email)))
    change_forms = {}
    for user in users:
        change = StaffChangeForm(prefix=f"u{user.id}", formdata=None, role=user.role, active=user.active,
                                 client=user.client.slug if user.client else "")
        change.client.choices = _client_choices(all_clients)
        change_forms[user.id] = change
    return render_template("admin/staff.html", form=form, users=users, change_forms=change_forms,
                           now=utcnow()), 400 if form.errors else 200


@bp.post("/staff/<int:user_id>")
def staff_change(user_id: int):
    user = db.session.get(StaffUser, user_id)
    if user is None:
        abort(404)
    form = StaffChangeForm(prefix=f"u{user.id}")
    form.client.choices = _client_choices(list(db.session.scalars(select(Client))))
    if not form.validate_on_submit():
        flash("Nothing changed: the form was incomplete.", "error")
        return redirect(url_for("admin.staff"))
    if user.id == current_user.id and (not form.active.data or form.role.data != "admin"):
        flash("You cannot deactivate yourself or drop your own admin role.", "error")
        return redirect(url_for("admin.staff"))
    client = db.session.scalar(select(Client).where(Client.slug == form.client.data)) if form.client.data else None
    try:
        staff_service.update_staff(db.session, user, actor=_actor(), role=form.role.data, active=form.active.data,
                                   client=client if form.role.data == "client" else None,
                                   unlock=form.unlock.data)
    except staff_service.StaffError as exc:
        db.session.rollback()
        flash(f"Nothing changed for {user.email}: {exc}.", "error")
    else:
        flash(f"Saved {user.email}.", "success")
    return redirect(url_for("admin.staff"))

from . import licences as _licences  # noqa: E402,F401  (issue 12: licence and webhook pages)
