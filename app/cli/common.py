"""What every command module shares: the actor the audit log names, output, finding a client,
and the ``learner`` group that ``cli/learners.py`` and ``cli/identity.py`` both add commands to.

Below the command modules: ``cli/__init__.py`` registers them all (``cli.register``) and they
import only this, never the package.
"""

from __future__ import annotations

import json

import click
from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.identity.student_ids import PseudonymParams
from app.models import Client

CLI_ACTOR = "cli"


def default_params() -> PseudonymParams:
    config = current_app.config
    return PseudonymParams(config["PSEUDONYM_TIME_COST"], config["PSEUDONYM_MEMORY_KIB"],
                           config["PSEUDONYM_PARALLELISM"])


def emit(as_json: bool, data: dict, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def find_client(slug: str) -> Client:
    client = db.session.scalar(select(Client).where(Client.slug == slug))
    if client is None:
        raise click.ClickException(f"no client with slug {slug!r} (see the admin's client list)")
    return client


learner_group = click.Group("learner", help="Act on one learner's data.")
