"""Ingest: the beacon face, accepting a beacon, the batch and group commit, held-back and seatless
beacons, the go-live check, erasure.
"""
