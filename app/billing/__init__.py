"""Billing: the figures (unique users, launches, completers per day, range and course), identity
drift's effect on them, and their faces: the usage API for invoicing scripts, the report pages and
CSVs for people. create_app loads the faces; this package imports none of them."""
