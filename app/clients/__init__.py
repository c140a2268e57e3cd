"""Clients: their settings, beacon keys, CSM and the process's client directory (the beacon path's
cache).
"""
