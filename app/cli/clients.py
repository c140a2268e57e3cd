"""``flask --app wsgi client ...``: create clients, list them, switch their mode, seal them, shred their pseudonyms."""

from __future__ import annotations

import click
from flask import current_app
from sqlalchemy import select

from app.cli.common import CLI_ACTOR, default_params, emit, find_client
from app.clients import services as client_service
from app.extensions import db
from app.licensing import terms as licence_terms
from app.models import LICENCES, Client

client_group = click.Group("client", help="Create and inspect clients.")


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
