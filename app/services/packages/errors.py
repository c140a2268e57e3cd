"""The one error a package build or republish raises: its message is safe to show."""


class PackageError(ValueError):
    """The package cannot be built as asked; the message says why and is safe to show."""
