"""Billing: the usage API for invoicing scripts (and, later, the report pages)."""

from .api import bp as api_bp

__all__ = ["api_bp"]
