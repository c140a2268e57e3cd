"""The staff admin: clients, anonymisation, keys and packages, the go-live check, audit log, staff users.

One module per face (``clients``, ``keys``, ``golive``, ``audit``, ``staff``),
all on the one blueprint ``bp``, guarded once for every route (``_guard``):
signed-in ``admin`` and ``csm`` users only; ``/admin/staff`` for ``admin``
alone. Client users get 404 (the admin does not exist for them), billing
staff 403. Views are thin: form, then a service that audits in the same
transaction, then a redirect. A new face registers its routes on ``bp`` in its
own module, which imports this one (never the other way) and is imported by
``create_app`` (``register_blueprints``).
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, request
from flask_login import current_user

from app.clients import services as client_service
from app.extensions import db, login_manager
from app.models import Client

bp = Blueprint("admin", __name__, url_prefix="/admin")

ADMIN_ROLES = ("admin", "csm")
ADMIN_ONLY_PREFIX = "admin.staff"


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


def client_or_404(slug: str) -> Client:
    client = client_service.find_client(db.session, slug)
    if client is None:
        abort(404)
    return client


def actor() -> str:
    return current_user.email


def clients_changed() -> None:
    """This process sees the change at once; others within CLIENT_CACHE_SECONDS."""
    current_app.extensions["client_directory"].clear()
