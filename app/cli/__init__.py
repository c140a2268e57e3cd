"""Operator commands: ``flask --app wsgi <group> <command>``; each prints JSON with --json.

One module of commands per domain; ``register`` (called by create_app) adds their groups, and the
modules import only ``common.py`` and the domains, never this package.
"""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    from app.cli import (
        clients,
        held_back,
        identity,
        learners,  # noqa: F401  (adds `learner erase` to the learner group)
        licences,
        local,
        packages,
        staff,
    )
    from app.cli.common import learner_group

    for group in (clients.client_group, staff.staff_group, staff.token_group, learner_group, local.demo_group,
                  local.tls_group, packages.package_group):
        app.cli.add_command(group)
    licences.register(app)
    held_back.register(app)
    identity.register(app)
