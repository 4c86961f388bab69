"""The HTTP API: a plain aiohttp server (``api/server.py``) over the route table
(``api/routes.py``); the worker factory runs it. No Faust here."""
