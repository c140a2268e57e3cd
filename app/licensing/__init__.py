"""Licences: terms, periods and seat windows, seats used, the decision at the limit, the forecast, seat
grants.
"""
