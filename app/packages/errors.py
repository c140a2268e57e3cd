"""The errors a package build or republish raises: their messages are safe to show."""

from __future__ import annotations

import contextlib
import errno
import os


class PackageError(ValueError):
    """The package cannot be built as asked; the message says why and is safe to show."""


class StorageError(PackageError):
    """The server could not store what was built (the content store or the output is full or
    unwritable); nothing was published. Not the asker's fault: an operator must act."""


@contextlib.contextmanager
def storing(what: str):
    """Turn an OSError while writing ``what`` into a StorageError, its reason without a path."""
    try:
        yield
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else "input/output error"
        hint = " (the disk is full; an operator must free space)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) \
            else ""
        raise StorageError(f"the server could not write {what}: {reason}{hint}; nothing was published") from None
