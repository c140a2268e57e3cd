"""Learner identity: normalising student IDs and names, pseudonyms and their short form, ID shapes,
placeholder IDs. Pure functions: no database.
"""
