"""Talking to a running system from outside: its HTTP API, its broker, its clock."""
