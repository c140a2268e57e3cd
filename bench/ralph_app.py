"""Ralph LRS's ASGI app as `bench/ingest.py` serves it: its file backend appending.

Ralph 5.1's file LRS backend writes every POSTed statement with its default
operation, CREATE, which refuses to write into the statements file once it
exists: the first statement is stored, every later one answers 500. Appending
is what the backend offers for adding records to a file, so the benchmark sets
that one class attribute and changes nothing else in Ralph.
"""

from ralph.backends.data.base import BaseOperationType
from ralph.backends.lrs.fs import FSLRSBackend

FSLRSBackend.default_operation_type = BaseOperationType.APPEND

from ralph.api import app  # noqa: E402  (after the backend is set to append)

__all__ = ["app"]
