"""``flask --app wsgi staff ...`` and ``token ...``: staff users, their passwords and second factors, API tokens."""

from __future__ import annotations

import secrets
import sys

import click

from app.cli.common import CLI_ACTOR, emit, find_client
from app.extensions import db
from app.models import ROLES
from app.staff import second_factor as second_factor_service
from app.staff import services as staff_service

staff_group = click.Group("staff", help="Create staff users and reset their passwords.")
token_group = click.Group("token", help="Bearer tokens for the JSON API.")


@staff_group.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--client", "client_slug", default=None, help="The client's slug (client role only).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--json", "as_json", is_flag=True)
def staff_create(email, role, client_slug, password_stdin, as_json):
    """Create a staff user. Without --password-stdin a password is generated and printed."""
    client = find_client(client_slug) if client_slug else None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        generated = False
    else:
        password = secrets.token_urlsafe(15)
        generated = True
    try:
        user = staff_service.create_staff(db.session, email=email, role=role, password=password,
                                          client=client, actor=CLI_ACTOR)
    except staff_service.StaffError as exc:
        raise click.ClickException(str(exc)) from None
    data = {"email": user.email, "role": user.role, "client": client.slug if client else None}
    if generated:
        data["password"] = password
    emit(as_json, data, f"Created {user.role} {user.email}" + (f" with password {password}" if generated else ""))


@staff_group.command("reset-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the new password from standard input.")
@click.option("--json", "as_json", is_flag=True)
def staff_reset_password(email, password_stdin, as_json):
    """Set a new password for EMAIL; every session it has ends, a lockout is lifted."""
    user = staff_service.find_staff(db.session, email)
    if user is None:
        raise click.ClickException(f"no staff user {email}")
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        ended = staff_service.reset_password(db.session, user, password, actor=CLI_ACTOR)
    except staff_service.StaffError as exc:
        raise click.ClickException(str(exc)) from None
    emit(as_json, {"email": user.email, "sessions_ended": ended},
         f"New password set for {user.email}; {ended} session(s) ended.")


@staff_group.command("reset-second-factor")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True)
def staff_reset_second_factor(email, as_json):
    """Remove EMAIL's passkeys, authenticator app and recovery codes (lost all); its sessions end. Audited."""
    user = staff_service.find_staff(db.session, email)
    if user is None:
        raise click.ClickException(f"no staff user {email}")
    ended = second_factor_service.reset_second_factor(db.session, user, actor=CLI_ACTOR)
    emit(as_json, {"email": user.email, "sessions_ended": ended},
         f"Second factor of {user.email} reset; {ended} session(s) ended. They set up a new one at next sign-in.")


@token_group.command("create")
@click.argument("email")
@click.option("--label", default=None, help="What the token is for.")
@click.option("--days", type=int, default=staff_service.TOKEN_DAYS, show_default=True,
              help=f"Days until the token expires (1 to {staff_service.MAX_TOKEN_DAYS}).")
@click.option("--json", "as_json", is_flag=True)
def token_create(email, label, days, as_json):
    """Create a bearer token for EMAIL's role (shown once)."""
    user = staff_service.find_staff(db.session, email)
    if user is None:
        raise click.ClickException(f"no staff user {email}")
    try:
        token = staff_service.create_token(db.session, user, actor=CLI_ACTOR, label=label, days=days)
    except staff_service.StaffError as exc:
        raise click.ClickException(str(exc)) from None
    row = staff_service.token_by_prefix(db.session, token[:staff_service.TOKEN_PREFIX_LENGTH])
    emit(as_json, {"token": token, "email": user.email, "role": user.role, "prefix": row.token_prefix,
                   "expires_at": row.expires_at.isoformat()}, token)


def _token_row(row) -> dict:
    return {"prefix": row.token_prefix, "email": row.staff_user.email, "role": row.staff_user.role,
            "label": row.label, "created_at": row.created_at.isoformat(),
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None}


@token_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def token_list(as_json):
    """List API tokens (never the tokens themselves: their prefix, owner, expiry, revocation)."""
    rows = [_token_row(r) for r in staff_service.all_tokens(db.session)]
    emit(as_json, {"tokens": rows}, "\n".join(
        f"{r['prefix'] or '(old token)'}\t{r['email']}\t{r['label'] or ''}\texpires {r['expires_at'] or 'never'}"
        f"{chr(9) + 'revoked' if r['revoked_at'] else ''}" for r in rows) or "No tokens.")


@token_group.command("revoke")
@click.argument("token_prefix")
@click.option("--json", "as_json", is_flag=True)
def token_revoke(token_prefix, as_json):
    """Revoke the API token whose prefix (as `token list` shows it) is TOKEN_PREFIX."""
    try:
        row = staff_service.token_by_prefix(db.session, token_prefix)
        staff_service.revoke_token(db.session, row, actor=CLI_ACTOR)
    except staff_service.StaffError as exc:
        raise click.ClickException(str(exc)) from None
    emit(as_json, _token_row(row), f"Revoked {row.token_prefix} of {row.staff_user.email}.")
