"""/admin/webhooks/<id>: one endpoint's deliveries, with each event's client, type and payload
(collapsed), filters (state, event type) and fixed-size pages; replay stays on each row.

States as a CSM reads them: ``delivered``; ``failed`` (dead, or tried and failing, retried with
back-off); ``waiting`` (not tried yet: due, or held while the endpoint is paused).
"""

from __future__ import annotations

import json
from math import ceil

from flask import abort, render_template, request
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import and_, func, or_, select

from app.admin import bp
from app.admin.licences import ActionForm
from app.extensions import db
from app.models import Client
from app.outbound import webhooks
from app.outbound.models import OutboxDelivery, OutboxEvent, WebhookEndpoint

PAGE_SIZE = 25
STATES = {
    "delivered": OutboxDelivery.status == "delivered",
    "failed": or_(OutboxDelivery.status == "dead",
                  and_(OutboxDelivery.status == "pending", OutboxDelivery.attempts > 0)),
    "waiting": and_(OutboxDelivery.status == "pending", OutboxDelivery.attempts == 0),
}


PAGE_RULE = "page must be a whole number from 1"


class DeliveryFilterSchema(Schema):
    status = fields.String(load_default="", validate=validate.OneOf(["", *STATES],
                           error="state must be delivered, failed or waiting"))
    type = fields.String(load_default="", validate=validate.OneOf(["", *webhooks.EVENT_TYPES],
                         error="unknown event type"))
    page = fields.Integer(load_default=1, strict=False, validate=validate.Range(min=1, max=1_000_000, error=PAGE_RULE),
                          error_messages={"invalid": PAGE_RULE})


_filters = DeliveryFilterSchema()


def pretty(body: str) -> str:
    """The delivery's body as sent, indented for reading (as stored if it is not JSON)."""
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return body


@bp.get("/webhooks/<int:endpoint_id>")
def webhook_detail(endpoint_id):
    endpoint = db.session.get(WebhookEndpoint, endpoint_id) or abort(404)
    try:
        args = _filters.load({k: v for k, v in request.args.items() if k in ("status", "type", "page")})
    except ValidationError as exc:
        messages = "; ".join(m for ms in exc.normalized_messages().values() for m in ms)
        abort(400, f"Filter not understood: {messages}.")
    where = [OutboxDelivery.endpoint_id == endpoint.id]
    if args["status"]:
        where.append(STATES[args["status"]])
    if args["type"]:
        where.append(OutboxEvent.type == args["type"])
    total = db.session.scalar(select(func.count()).select_from(OutboxDelivery)
                              .join(OutboxEvent, OutboxEvent.id == OutboxDelivery.event_id).where(*where))
    pages = max(1, ceil(total / PAGE_SIZE))
    page = min(args["page"], pages)
    rows = db.session.execute(
        select(OutboxDelivery, OutboxEvent, Client)
        .join(OutboxEvent, OutboxEvent.id == OutboxDelivery.event_id)
        .outerjoin(Client, Client.id == OutboxEvent.client_id)
        .where(*where)
        .order_by(OutboxDelivery.status == "delivered", OutboxDelivery.id.desc())
        .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)).all()
    filters = {k: args[k] for k in ("status", "type") if args[k]}
    return render_template("admin/webhook_detail.html", endpoint=endpoint, rows=rows, action_form=ActionForm(),
                           total=total, page=page, pages=pages, page_size=PAGE_SIZE, filters=filters,
                           states=list(STATES), event_types=webhooks.EVENT_TYPES, pretty=pretty)
