"""A client's learners across ID schemes and modes: merges (one person under two IDs), the
anonymisation switch, held-back and drift records.
"""
