"""The production app plus one bench-only no-op route, for `bench/ingest.py`.

``POST /bench/noop`` reads the body and answers 204 through the same Flask
app (same hooks, security headers, gunicorn configuration), so its rate is
the ceiling a beacon could reach. It exists only here, never in ``wsgi.py``.
"""

from flask import Response, request

from app import create_app
from app.extensions import csrf

app = create_app()


@app.post("/bench/noop")
@csrf.exempt
def bench_noop():
    request.get_data(cache=False)
    return Response(status=204)
