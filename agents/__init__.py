"""Faust agents: each a thin wrapper that decodes, calls pure logic, and sends. They
never import ``projections``: the worker factory hands them what projects."""
