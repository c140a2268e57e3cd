"""gunicorn.conf.py without its ``ssl_context`` hook: gunicorn's stock TLS set-up.

gunicorn then builds a new SSL context (and loads the key) for every
connection; `bench/ingest.py --tls` measures what the hook saves.
"""

import runpy
from pathlib import Path

_conf = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
globals().update({k: v for k, v in _conf.items() if not k.startswith("_") and k != "ssl_context"})
