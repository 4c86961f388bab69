"""Delivery: turning send commands into messages (content rendering, for now)."""
