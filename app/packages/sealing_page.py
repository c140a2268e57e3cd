"""The sealing page: a client seals its packages with its own key, in its own browser.

The page and its scripts are static: nothing the client types or picks leaves the
browser (its Content-Security-Policy has ``connect-src 'none'`` and
``form-action 'none'``), and once loaded it works offline. It takes a package built
for a sealed client, writes what the key derives into the package's tracker (deployed)
or launcher (remote), and gives the zip back; and it computes a learner's sealed ID
for an erasure request. No sign-in: there is nothing here for the server to know.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request

from app.packages.sealing import seal_library

bp = Blueprint("seal", __name__)

SEALING_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'none'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'"
)


@bp.get("/seal")
def page():
    response = Response(render_template("seal/page.html"))
    response.headers["Content-Security-Policy"] = SEALING_PAGE_POLICY
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/seal/sealing.js")
def library():
    """scorm_package/sealing.js with Python's character tables: the code that also runs in every package."""
    response = Response(seal_library(), mimetype="text/javascript")
    response.headers["Cache-Control"] = "no-cache"
    response.add_etag()
    return response.make_conditional(request)
