"""Faust agents: each a thin wrapper that decodes, calls pure logic, and sends."""
