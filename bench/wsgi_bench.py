"""The production app plus one bench-only no-op route, for `bench/ingest.py`.

``POST /bench/noop`` reads the body and answers 204 through the same Flask
app (same hooks, security headers, gunicorn configuration), so its rate is
the ceiling a beacon could reach. It exists only here, never in ``wsgi.py``.

With ``BENCH_RETURNING_POOL=N`` each worker first computes the pseudonyms of
the benchmark's returning learners for every anonymised client, as a
long-running worker would hold them in its cache (the warm-up, not measured).
"""

import os

from flask import Response, request
from sqlalchemy import select

from app import create_app
from app.clients.services import snapshot
from app.extensions import csrf, db
from app.identity.student_ids import normalise_student_id
from app.models import Client

app = create_app()


@app.post("/bench/noop")
@csrf.exempt
def bench_noop():
    request.get_data(cache=False)
    return Response(status=204)


def _warm_pseudonym_cache(pool: int) -> None:
    pseudonymiser = app.extensions["pseudonymiser"]
    with app.app_context():
        for client in db.session.scalars(select(Client).where(Client.anonymised.is_(True))):
            key = snapshot(db.session, client).pseudonym_key
            for n in range(1, pool + 1):
                pseudonymiser.pseudonym(key, normalise_student_id(f"returning-{n}@example.com"))
        db.session.remove()


if os.environ.get("BENCH_RETURNING_POOL"):
    _warm_pseudonym_cache(int(os.environ["BENCH_RETURNING_POOL"]))
if os.environ.get("BENCH_READY_DIR"):
    # One file per loaded worker: the benchmark starts measuring when all are ready.
    open(os.path.join(os.environ["BENCH_READY_DIR"], str(os.getpid())), "w").close()
