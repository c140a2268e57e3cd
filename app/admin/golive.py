"""Admin: the go-live check, with beacons appearing as they arrive."""

from __future__ import annotations

from flask import current_app, jsonify, render_template, request

from app.admin import bp, client_or_404
from app.extensions import db
from app.ingest import golive


@bp.get("/clients/<slug>/go-live")
def client_golive(slug: str):
    client = client_or_404(slug)
    report = golive.health_report(db.session, current_app.extensions["pseudonymiser"], client)
    beacons = golive.recent_beacons(db.session, client)
    return render_template("admin/golive.html", client=client, report=report, beacons=beacons,
                           last_id=max((b["id"] for b in beacons), default=0))


@bp.get("/clients/<slug>/go-live/beacons.json")
def client_golive_beacons(slug: str):
    client = client_or_404(slug)
    after = request.args.get("after", "0")
    after_id = int(after) if after.isdigit() else 0
    beacons = golive.recent_beacons(db.session, client, after_id=after_id)  # oldest first
    return jsonify({"beacons": beacons, "last_id": max([b["id"] for b in beacons] + [after_id])})
