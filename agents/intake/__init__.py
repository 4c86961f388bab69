"""Intake of the input topics: validation, dead letters and projection rows."""
