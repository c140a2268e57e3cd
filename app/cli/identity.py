"""Operator commands for learner identities: merge, unmerge, accept drift proposals, check for drift.

``learner merge|unmerge|merge-proposals`` join the ``learner`` group of ``cli/common.py``;
``identity check-drift`` is for cron (the outbox worker also runs it on its sweep).
For anonymised clients the plain student IDs given are pseudonymised in memory with
the client's key: they are never stored, logged or printed (the output names
pseudonyms' short references).
"""

from __future__ import annotations

import click
from flask import Flask, current_app
from sqlalchemy import select

from app.billing import drift
from app.cli.common import CLI_ACTOR, emit, find_client, learner_group
from app.extensions import db
from app.identity.student_ids import InvalidIdentity
from app.learners import merges
from app.models import Client

identity_group = click.Group("identity", help="Learner identities: ID-scheme drift.")


def _learner(client, student_id):
    try:
        return merges.find_learner_by_student_id(db.session, current_app.extensions["pseudonymiser"], client,
                                                 student_id)
    except (InvalidIdentity, merges.MergeError) as exc:
        raise click.ClickException(f"{exc} (--student-id / --into)") from None


def review_url(client) -> str:
    return f"{current_app.config['PUBLIC_URL'].rstrip('/')}/admin/clients/{client.slug}/identities"


@learner_group.command("merge")
@click.option("--client", "client_slug", required=True)
@click.option("--student-id", required=True, help="The old identity, as the LMS sent it (or a stored pseudonym).")
@click.option("--into", "into_id", required=True, help="The identity it joins (the one the LMS sends now).")
@click.option("--json", "as_json", is_flag=True)
def learner_merge(client_slug, student_id, into_id, as_json):
    """Count two identities of one person as one learner, in every figure of every period."""
    client = find_client(client_slug)
    old, into = _learner(client, student_id), _learner(client, into_id)
    try:
        record = merges.merge(db.session, client, old, into, actor=CLI_ACTOR)
    except merges.MergeError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    data = {"client": client.slug, "merge": record.id, "learner": merges.reference(old),
            "into": merges.reference(into)}
    emit(as_json, data, f"Merged {data['learner']} into {data['into']} ({client.slug}); undo with learner unmerge.")


@learner_group.command("unmerge")
@click.option("--client", "client_slug", required=True)
@click.option("--student-id", required=True, help="The identity that was merged into another.")
@click.option("--json", "as_json", is_flag=True)
def learner_unmerge(client_slug, student_id, as_json):
    """Undo a merge: the identity counts as a learner of its own again."""
    client = find_client(client_slug)
    old = _learner(client, student_id)
    try:
        record = merges.unmerge(db.session, client, old, actor=CLI_ACTOR)
    except merges.MergeError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from None
    emit(as_json, {"client": client.slug, "merge": record.id, "learner": merges.reference(old)},
         f"Unmerged {merges.reference(old)} ({client.slug}).")


def _proposal_row(proposal: drift.Proposal) -> dict:
    return {"key": proposal.key, "old": proposal.old.reference, "old_shape": proposal.old.shape,
            "new": proposal.new.reference, "new_shape": proposal.new.shape, "confidence": proposal.confidence,
            "shared_courses": proposal.shared_courses, "matched_on": proposal.matched_on}


@learner_group.command("merge-proposals")
@click.option("--client", "client_slug", required=True)
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Accept only proposals at least this confident.")
@click.option("--dry-run", is_flag=True, help="List the proposals and the effect on billing; merge nothing.")
@click.option("--json", "as_json", is_flag=True)
def learner_merge_proposals(client_slug, min_confidence, dry_run, as_json):
    """Merge every pair the drift check proposes (as "Merge all" on the admin's Identities page)."""
    import datetime as dt

    client = find_client(client_slug)
    found = [p for p in drift.proposals(db.session, client) if p.confidence >= min_confidence]
    effect = drift.preview(db.session, client, [p.key for p in found], dt.datetime.now(dt.UTC).date())
    client = find_client(client_slug)
    merged = [] if dry_run else drift.accept(db.session, client, [p.key for p in found], actor=CLI_ACTOR)
    data = {"client": client.slug, "dry_run": dry_run, "proposals": [_proposal_row(p) for p in found],
            "merged": len(merged),
            "effect": [{"period": e.label, "from": e.period.start.isoformat(), "to": e.period.end.isoformat(),
                        "unique_users_before": e.before, "unique_users_after": e.after} for e in effect]}
    lines = [f"{p.old.reference} ({p.old.shape}) -> {p.new.reference} ({p.new.shape}), confidence "
             f"{p.confidence:.0%}" for p in found] or ["No proposals."]
    lines += [f"{e.label} {e.period.start}..{e.period.end}: {e.before} -> {e.after} unique learners" for e in effect]
    lines.append("Dry run: nothing merged." if dry_run else f"Merged {len(merged)} pair(s).")
    emit(as_json, data, "\n".join(lines))


@identity_group.command("check-drift")
@click.option("--client", "client_slug", default=None, help="One client (default: every active client).")
@click.option("--json", "as_json", is_flag=True)
def check_drift(client_slug, as_json):
    """Look for ID-scheme drift; alert once per episode (e-mail and the identity.drift webhook)."""
    clients = [find_client(client_slug)] if client_slug else None
    opened = drift.check_drift(db.session, clients=clients, review_url=review_url)
    slugs = dict(db.session.execute(select(Client.id, Client.slug)).all())
    rows = [{"client": slugs.get(e.client_id), "from_shape": e.from_shape, "to_shape": e.to_shape,
             "since": e.since.isoformat(), "pairs": e.pairs, "new_learners": e.new_learners} for e in opened]
    emit(as_json, {"opened": rows},
         "\n".join(f"{r['client']}: drift {r['from_shape']} -> {r['to_shape']} since {r['since'][:10]}: "
                   f"{r['pairs']} pair(s), {r['new_learners']} new learner(s); alert queued." for r in rows)
         or "No new drift.")


def register(app: Flask) -> None:
    app.cli.add_command(identity_group)
