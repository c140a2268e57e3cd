"""Outbound events: the outbox (one row per event, in the transaction that caused it), signed webhooks
and alert e-mail.
"""
