"""gunicorn defaults: HTTPS on 127.0.0.1:8443 (PORT, HOST, CERT_FILE, KEY_FILE override).

The TLS context is built once per worker (``ssl_context`` below): gunicorn's
default builds one per connection, about 3 ms of CPU each, and browsers open
a new connection for most beacons.
"""

import multiprocessing
import os
import ssl
from pathlib import Path

_instance = Path(__file__).resolve().parent / "instance"

bind = [f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8443')}"]
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = os.environ.get("ACCESS_LOG", "-")
errorlog = "-"
# gunicorn 27's runtime control socket is not used; several servers on one host would share its path.
control_socket_disable = True
loglevel = os.environ.get("LOG_LEVEL", "info")
# Behind a TLS-terminating load balancer set PLAIN_HTTP=1 (and TRUSTED_PROXIES).
if os.environ.get("PLAIN_HTTP", "") not in ("1", "true", "yes"):
    certfile = os.environ.get("CERT_FILE") or str(_instance / "tls" / "cert.pem")
    keyfile = os.environ.get("KEY_FILE") or str(_instance / "tls" / "key.pem")

_context = None


def ssl_context(conf, default_ssl_context_factory):
    """One TLS context per worker, TLS 1.2 at least."""
    global _context
    if _context is None:
        context = default_ssl_context_factory()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        _context = context
    return _context
