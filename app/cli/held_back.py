"""Commands for beacons held back for a placeholder student ID: ``flask --app wsgi held-back ...``.

``list`` shows them (by placeholder and course), ``release`` counts them
(after a preview and a confirmation, or ``--yes``), ``policy`` shows or sets
the client's placeholder list. Registered by ``cli.register``.
"""

from __future__ import annotations

import click
from flask import Flask, current_app

from app.cli.common import CLI_ACTOR, emit, find_client
from app.clients import services as client_service
from app.extensions import db
from app.identity.placeholders import DEFAULT_PLACEHOLDER_IDS, policy_entries
from app.identity.student_ids import InvalidIdentity
from app.ingest import held_back

held_back_group = click.Group("held-back", help="Beacons held back for a placeholder student ID.")


def _figures_json(figures: held_back.HeldBackFigures) -> dict:
    return {**figures.as_report(),
            "courses": [{"placeholder": r.placeholder, "course": r.course, "beacons": r.beacons,
                         "launches": r.launches, "first_at": r.first_at.isoformat(), "last_at": r.last_at.isoformat()}
                        for r in figures.by_course]}


def _figures_text(figures: held_back.HeldBackFigures) -> str:
    if not figures.beacons:
        return "Nothing held back."
    lines = [f"{figures.beacons} beacon(s) held back, {figures.launches} launch(es):"]
    lines += [f"  {r.placeholder!r:24} {r.course}: {r.beacons} beacon(s), {r.launches} launch(es), "
              f"{r.first_at:%Y-%m-%d} to {r.last_at:%Y-%m-%d}" for r in figures.by_course]
    return "\n".join(lines)


@held_back_group.command("list")
@click.option("--client", "slug", required=True, help="The client's slug.")
@click.option("--json", "as_json", is_flag=True)
def held_back_list(slug, as_json):
    """Beacons held back now (not released), by placeholder and course."""
    client = find_client(slug)
    figures = held_back.figures(db.session, client.id)
    emit(as_json, {"client": client.slug, **_figures_json(figures)}, _figures_text(figures))


@held_back_group.command("release")
@click.option("--client", "slug", required=True, help="The client's slug.")
@click.option("--placeholder", default=None, help="Release only this placeholder (as listed); default: all.")
@click.option("--yes", is_flag=True, help="Release without asking (the preview is still printed).")
@click.option("--json", "as_json", is_flag=True)
def held_back_release(slug, placeholder, yes, as_json):
    """Count held-back beacons: each placeholder becomes one learner in every figure. Audited."""
    client = find_client(slug)
    preview = held_back.figures(db.session, client.id, placeholder=placeholder)
    if not preview.beacons:
        raise click.ClickException("nothing is held back" + (f" for {placeholder!r}" if placeholder else ""))
    if not as_json:
        click.echo(_figures_text(preview))
    if not yes:
        click.confirm("Release and count these beacons?", abort=True, err=True)
    done = held_back.release(db.session, current_app.extensions["pseudonymiser"],
                             current_app.extensions["client_directory"], client, actor=CLI_ACTOR,
                             placeholder=placeholder)
    emit(as_json, {"client": client.slug, "placeholder": placeholder, "released": done.beacons,
                   "launches": done.launches},
         f"Released {done.beacons} beacon(s) ({done.launches} launch(es)); they are counted from now on.")


@held_back_group.command("policy")
@click.option("--client", "slug", required=True, help="The client's slug.")
@click.option("--set", "entries", multiple=True, help="A placeholder ID (repeat); replaces the list.")
@click.option("--defaults", is_flag=True, help="Follow the default list again.")
@click.option("--clear", is_flag=True, help="Hold nothing back.")
@click.option("--json", "as_json", is_flag=True)
def held_back_policy(slug, entries, defaults, clear, as_json):
    """Show the client's placeholder list, or set it (audited)."""
    client = find_client(slug)
    if sum(map(bool, (entries, defaults, clear))) > 1:
        raise click.UsageError("give one of --set, --defaults, --clear")
    new = list(entries) if entries else (list(DEFAULT_PLACEHOLDER_IDS) if defaults else [] if clear else None)
    if new is not None:
        try:
            client_service.update_client(
                db.session, client, actor=CLI_ACTOR, name=client.name, active=client.active, licence=client.licence,
                origins=client.allowed_origins or [], local_http=True, confirm_duplicate=True, placeholder_ids=new)
        except (client_service.ClientError, InvalidIdentity) as exc:
            db.session.rollback()
            raise click.ClickException(str(exc)) from None
    current = list(policy_entries(client.placeholder_ids))
    emit(as_json, {"client": client.slug, "placeholder_ids": current, "defaults": client.placeholder_ids is None},
         ("Placeholder IDs" + (" (the defaults)" if client.placeholder_ids is None else "") + ": "
          + (", ".join(repr(p) for p in current) or "none, nothing is held back")))


def register(app: Flask) -> None:
    app.cli.add_command(held_back_group)
