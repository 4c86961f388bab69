"""The push providers' fakes with credentials made for a test (they live in
benchmarks/push_fakes.py, which ``reach bench delivery`` runs against too)."""

from benchmarks.push_fakes import TOPIC, Fakes, push_fakes

__all__ = ["TOPIC", "Fakes", "push_fakes"]
