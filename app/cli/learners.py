"""``flask --app wsgi learner erase``: one learner's data erased on request (``cli/identity.py`` adds merges)."""

from __future__ import annotations

import click
from flask import current_app

from app.cli.common import CLI_ACTOR, emit, find_client, learner_group
from app.extensions import db
from app.identity.student_ids import InvalidIdentity
from app.ingest import erasure as learner_service


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
