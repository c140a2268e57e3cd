"""Operator commands: ``flask --app wsgi <group> <command>``; each prints JSON with --json."""

from __future__ import annotations

import datetime as dt
import secrets
import sys
from pathlib import Path

import click
from flask import Flask, current_app
from sqlalchemy import select

from app import packages as package_service
from app.cli.common import CLI_ACTOR, default_params, emit, find_client, learner_group
from app.clients import services as client_service
from app.extensions import db
from app.identity.student_ids import InvalidIdentity
from app.ingest import erasure as learner_service
from app.licensing import terms as licence_terms
from app.models import LICENCES, ROLES, Client, StaffUser
from app.staff import second_factor as second_factor_service
from app.staff import services as staff_service

client_group = click.Group("client", help="Create and inspect clients.")
staff_group = click.Group("staff", help="Create staff users and reset their passwords.")
token_group = click.Group("token", help="Bearer tokens for the JSON API.")
demo_group = click.Group("demo", help="Demo data for a first look.")
tls_group = click.Group("tls", help="Certificates for local HTTPS.")
package_group = click.Group("package", help="Build SCORM packages for clients.")


@client_group.command("create")
@click.option("--name", required=True, help="The client organisation's name.")
@click.option("--anonymised", is_flag=True, help="Store learners as keyed, salted pseudonyms.")
@click.option("--sealed", is_flag=True, help="Its packages are sealed with its own key (implies --anonymised).")
@click.option("--licence", type=click.Choice(LICENCES), default="subscription", show_default=True)
@click.option("--origin", "origins", multiple=True, help="An allowed LMS origin (repeat); none: any origin.")
@click.option("--seat-limit", type=click.IntRange(min=0), default=None,
              help="Gives the client a licence term with this many seats (unique learners over the term).")
@click.option("--licence-start", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="The first licence term starts on this day (default: today).")
@click.option("--licence-end", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="The first licence term ends on this day, inclusive (default: one year after its start).")
@click.option("--slug", default=None, help="URL name; made from the name when left out.")
@click.option("--allow-duplicate-name", is_flag=True, help="Create it although another client has this name.")
@click.option("--alert-email", "alert_emails", multiple=True, help="A contact for licence alerts (repeat).")
@click.option("--csm", "csm_email", default=None,
              help="Its customer success manager (a csm or admin staff user's e-mail): gets its alert e-mails. "
                   "None: every active CSM does.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def client_create(name, anonymised, sealed, licence, origins, seat_limit, licence_start, licence_end, slug,
                  allow_duplicate_name, alert_emails, csm_email, as_json):
    """Create a client and print its beacon key (shown once).

    With --seat-limit (or --licence-start/--licence-end) it gets its first licence term,
    as ``licence add-term`` would make: alerts, forecasts and enforcement apply.
    """
    try:
        csm = client_service.find_csm(db.session, csm_email)
        client, key = licence_terms.create_client_with_term(
            db.session, name=name, actor=CLI_ACTOR, anonymised=anonymised, sealed=sealed, licence=licence,
            origins=list(origins), seat_limit=seat_limit, slug=slug, params=default_params(),
            licence_start=licence_start.date() if licence_start else None,
            licence_end=licence_end.date() if licence_end else None,
            local_http=current_app.config["APP_ENV"] != "production", confirm_duplicate=allow_duplicate_name,
            csm=csm,
        )
    except client_service.DuplicateName as exc:
        raise click.ClickException(f"{exc} with --allow-duplicate-name") from None
    except client_service.ClientError as exc:
        raise click.ClickException(str(exc)) from None

    term = next(iter(licence_terms.terms(db.session, client.id)), None)
    data = {"slug": client.slug, "key": key, "name": client.name, "anonymised": client.anonymised,
            "sealed": client.sealed, "licence": client.licence, "origins": client.allowed_origins,
            "seat_limit": term.seat_limit if term else None, "term": term.as_dict() if term else None,
            "csm": client.csm.email if client.csm else None}
    if alert_emails:
        from app.cli.licences import set_alert_emails
        data["alert_emails"] = set_alert_emails(client, alert_emails)
    emit(as_json, data, f"Created client {client.slug!r}. Beacon key (shown once): {key}")


@client_group.command("list")
@click.option("--json", "as_json", is_flag=True)
def client_list(as_json):
    """List clients."""
    rows = [client_service.client_settings(c) for c in db.session.scalars(select(Client).order_by(Client.slug))]
    emit(as_json, {"clients": rows},
         "\n".join(f"{r['slug']}\t{r['name']}\t{'anonymised' if r['anonymised'] else 'verbatim'}\t{r['licence']}"
                   for r in rows) or "No clients yet.")


@client_group.command("set-mode")
@click.argument("slug")
@click.option("--anonymised/--verbatim", required=True,
              help="--anonymised pseudonymises every stored learner now, irreversibly.")
@click.option("--confirm-name", required=True, help="The client's name, typed out, as in the admin.")
@click.option("--json", "as_json", is_flag=True)
def client_set_mode(slug, anonymised, confirm_name, as_json):
    """Switch a client's anonymisation (as the admin's Anonymisation page; for large clients)."""
    from app.learners import anonymisation

    client = find_client(slug)
    if confirm_name.strip() != client.name:
        raise click.ClickException("--confirm-name does not match the client's name; nothing changed")
    try:
        done = anonymisation.switch_mode(db.session, current_app.extensions["pseudonymiser"], client,
                                         anonymised=anonymised, actor=CLI_ACTOR)
    except client_service.ClientError as exc:
        raise click.ClickException(str(exc)) from None
    current_app.extensions["client_directory"].clear()
    mode = "anonymised" if anonymised else "verbatim"
    emit(as_json, {"slug": client.slug, "anonymised": anonymised, **done},
         f"{client.slug} is now {mode}." + (f" Pseudonymised {done['learners_pseudonymised']} learner(s), "
                                             f"merged {done['learners_merged']}." if anonymised else ""))


@client_group.command("set-sealed")
@click.argument("slug")
@click.option("--sealed/--unsealed", required=True,
              help="--sealed: only packages sealed with the client's own key are counted from now on.")
@click.option("--json", "as_json", is_flag=True)
def client_set_sealed(slug, sealed, as_json):
    """Turn a client's sealed packages on or off (its packages must then be built and sealed again)."""
    client = find_client(slug)
    try:
        client_service.set_sealed(db.session, client, sealed=sealed, actor=CLI_ACTOR)
    except client_service.ClientError as exc:
        raise click.ClickException(str(exc)) from None
    current_app.extensions["client_directory"].clear()
    emit(as_json, {"slug": client.slug, "sealed": sealed},
         f"{client.slug}'s packages are {'now sealed' if sealed else 'no longer sealed'}: build them again.")


@client_group.command("shred-pseudonyms")
@click.argument("slug")
@click.option("--confirm-name", required=True, help="The client's name, typed out.")
@click.option("--json", "as_json", is_flag=True)
def client_shred(slug, confirm_name, as_json):
    """Delete the client's pseudonym salt for good (crypto-shredding) and deactivate it.

    Stored counts stay; no stored pseudonym can be linked to a person again.
    """
    client = find_client(slug)
    if confirm_name.strip() != client.name:
        raise click.ClickException("--confirm-name does not match the client's name; nothing changed")
    try:
        client_service.shred_pseudonyms(db.session, client, actor=CLI_ACTOR)
    except client_service.ClientError as exc:
        raise click.ClickException(str(exc)) from None
    current_app.extensions["client_directory"].clear()
    emit(as_json, {"slug": client.slug, "salt": "deleted", "active": False},
         f"The pseudonym salt of {client.slug} is deleted and the client deactivated.")


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


@learner_group.command("erase")
@click.option("--client", "client_slug", required=True)
@click.option("--student-id", required=True, help="As the LMS sends it; normalised as at ingest.")
@click.option("--json", "as_json", is_flag=True)
def learner_erase(client_slug, student_id, as_json):
    """Erase one learner's events, usage and record (both modes)."""
    client = find_client(client_slug)
    try:
        erased = learner_service.erase_learner(db.session, current_app.extensions["pseudonymiser"], client,
                                               student_id, actor=CLI_ACTOR)
    except InvalidIdentity as exc:
        raise click.ClickException(str(exc)) from None
    emit(as_json, {"client": client.slug, "erased": erased},
         f"Erased {erased} learner record(s) of {client.slug}." if erased else "No such learner; nothing erased.")


@package_group.command("build")
@click.option("--client", "client_slug", required=True, help="The client's slug.")
@click.option("--course", "course_title", required=True, help="The course title, as billing will show it.")
@click.option("--scorm", "scorm_version", type=click.Choice(package_service.SCORM_VERSIONS), default=None,
              help="SCORM content and the placeholder: 1.2 or 2004. Leave out for a cmi5 or Tin Can export.")
@click.option("--content", type=click.Path(exists=True), default=None,
              help="A folder or zip with index.html, an authoring tool's SCORM, cmi5 (cmi5.xml) or Tin Can "
                   "(tincan.xml) zip; none: a placeholder.")
@click.option("--mode", type=click.Choice(package_service.MODES), default="deployed", show_default=True)
@click.option("--server-url", default=None, help="Where learners' browsers reach this server (default PUBLIC_URL).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, writable=True),
              help="The zip file to write.")
@click.option("--json", "as_json", is_flag=True)
def package_build(client_slug, course_title, scorm_version, content, mode, server_url, output, as_json):
    """Build a SCORM, cmi5 or Tin Can package (a new beacon key is written into it) and record its issue."""
    client = find_client(client_slug)
    target = Path(output)
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        built = package_service.build_package(
            db.session, client=client, course_title=course_title, scorm_version=scorm_version, out=partial,
            content=content, mode=mode, server_url=server_url or current_app.config["PUBLIC_URL"],
            issued_by=CLI_ACTOR,
        )
        partial.replace(target)
    except package_service.PackageError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {target}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    data = {"package_id": str(built.issue.package_id), "client": client.slug, "course": built.issue.course_title,
            "scorm_version": built.scorm_version, "mode": built.mode, "file": str(target),
            "bytes": target.stat().st_size, "launch_files": built.launch_files, "key_prefix": built.key_prefix,
            "server_url": built.server_url}
    if built.mode == "remote":
        data |= {"content_url": built.content_url, "warnings": built.warnings}
    for warning in built.warnings:
        click.echo(f"Warning: {warning}", err=True)
    what = "untracked (perpetual licence)" if built.mode == "untracked" else f"reporting to {built.server_url}"
    emit(as_json, data, f"Wrote {target} ({package_service.format_name(built.scorm_version)}, {what}), "
                        f"package {data['package_id']}.")


@package_group.command("republish")
@click.option("--package", "package_id", type=click.UUID, required=True, help="The remote package's ID.")
@click.option("--content", type=click.Path(exists=True), required=True,
              help="The new course: a folder or zip with index.html, or an authoring tool's SCORM zip.")
@click.option("--json", "as_json", is_flag=True)
def package_republish(package_id, content, as_json):
    """Replace a remote package's course on this server; every LMS shows it at the next launch."""
    try:
        remote = package_service.republish(db.session, package_id=package_id, content=content, actor=CLI_ACTOR)
    except package_service.PackageError as exc:
        raise click.ClickException(str(exc)) from None
    data = {"package_id": str(package_id), "launch_file": remote.launch_file, "bytes": remote.content_bytes,
            "version": remote.content_version, "warnings": remote.warnings}
    for warning in remote.warnings:
        click.echo(f"Warning: {warning}", err=True)
    emit(as_json, data, f"Republished package {package_id} ({data['bytes']} bytes, opens {remote.launch_file}).")


@package_group.command("seal")
@click.option("--key-file", type=click.File("r"), required=True,
              help="The client's sealing key (base64url, 32 random bytes); see also --new-key.")
@click.option("--in", "source", type=click.Path(exists=True, dir_okay=False), required=True,
              help="A package built for a sealed client.")
@click.option("--out", "output", type=click.Path(dir_okay=False, writable=True), required=True)
@click.option("--json", "as_json", is_flag=True)
def package_seal(key_file, source, output, as_json):
    """Seal a package with the client's own key, offline (the same as the sealing page; no database)."""
    from app.packages import sealing

    try:
        key = sealing.read_client_key(key_file.read())
        with open(source, "rb") as unsealed, open(output, "wb") as out:
            done = sealing.seal_zip(unsealed, out, key)
    except package_service.PackageError as exc:
        Path(output).unlink(missing_ok=True)
        raise click.ClickException(str(exc)) from None
    emit(as_json, {"out": output, **done}, f"Wrote {output}, sealed with key {done['kid']}.")


@package_group.command("seal-key")
@click.option("-o", "output", type=click.Path(dir_okay=False, writable=True), required=True,
              help="Where to write the new key (kept by the client; never give it to the vendor).")
def package_seal_key(output):
    """Make a new sealing key for a client (32 random bytes, base64url)."""
    import base64
    import os

    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    click.echo(f"Wrote a new sealing key to {output}.")


@package_group.command("sealed-id")
@click.option("--key-file", type=click.File("r"), required=True, help="The client's sealing key.")
@click.option("--student-id", required=True, help="As the LMS sends it; normalised as the tracker does.")
def package_sealed_id(key_file, student_id):
    """A learner's sealed ID (what `learner erase --student-id` takes for a sealed client)."""
    from app.packages import sealing

    try:
        click.echo(sealing.sealed_student_id(sealing.read_client_key(key_file.read()), student_id))
    except (package_service.PackageError, InvalidIdentity) as exc:
        raise click.ClickException(str(exc)) from None


@demo_group.command("init")
def demo_init():
    """Create a demo admin and a demo client once; print their credentials once."""
    if db.session.scalar(select(StaffUser.id).limit(1)) is not None:
        click.echo("Demo data exists already (credentials were printed when it was made).")
        return
    password = secrets.token_urlsafe(12)
    staff_service.create_staff(db.session, email="admin@example.com", role="admin", password=password,
                               actor=CLI_ACTOR)
    client, key = licence_terms.create_client_with_term(db.session, name="Demo Client", actor=CLI_ACTOR,
                                                          params=default_params(), seat_limit=100)
    base = current_app.config["PUBLIC_URL"]
    click.echo("\n".join([
        "", "=" * 64, "Demo data created. These are shown once; keep them.",
        f"  Staff admin:  {base}/login",
        "    e-mail:     admin@example.com",
        f"    password:   {password}",
        f"  Demo client:  {client.slug}",
        f"    beacon key: {key}",
        "=" * 64, "",
    ]))


@tls_group.command("self-signed")
@click.option("--cert", "cert_path", required=True, type=click.Path(dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False))
@click.option("--host", "hosts", multiple=True, default=("localhost", "127.0.0.1", "::1"), show_default=True)
def tls_self_signed(cert_path, key_path, hosts):
    """Make a self-signed ECDSA certificate for local HTTPS, unless one exists."""
    if Path(cert_path).exists() and Path(key_path).exists():
        click.echo(f"Using the certificate in {cert_path}.")
        return
    write_self_signed(Path(cert_path), Path(key_path), hosts)
    click.echo(f"Made a self-signed certificate in {cert_path} (browsers will warn: it is for local use).")


def write_self_signed(cert_path: Path, key_path: Path, hosts) -> None:
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SCORM usage tracker (local)")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


def register(app: Flask) -> None:
    for group in (client_group, staff_group, token_group, learner_group, demo_group, tls_group, package_group):
        app.cli.add_command(group)
    from app.cli.held_back import register as register_held_back
    from app.cli.identity import register as register_identity
    from app.cli.licences import register as register_licences

    register_licences(app)
    register_held_back(app)
    register_identity(app)
