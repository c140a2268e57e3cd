"""Billing: the usage API for invoicing scripts, and the report pages and CSVs for people."""

from app.billing.api import bp as api_bp
from app.billing.pages import bp as pages_bp

__all__ = ["api_bp", "pages_bp"]
