"""The ``reach`` command (``cli/main.py``), its command groups, and the demo."""
