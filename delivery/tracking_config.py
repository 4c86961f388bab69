"""Where the tracking key and the base URL of tracking links come from.

The email adapter signs with the key and the HTTP API verifies with it, so both must
read the same one: ``REACH_TRACKING_SECRET``, or else a random key created once in the
data directory (enough for one process, or several sharing that directory).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from streams import runfile
from streams.settings import Settings

KEY_FILE = "tracking.key"


def tracking_key(settings: Settings) -> bytes:
    if settings.tracking_secret:
        return settings.tracking_secret.encode()
    return _kept_key(settings.data_dir / KEY_FILE)


def _kept_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_bytes(secrets.token_urlsafe(32).encode())
        temporary.chmod(0o600)
        # A link, not a rename: of two processes creating it at once, the first wins and
        # both read the same key.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
        temporary.unlink()
    key = path.read_bytes().strip()
    if not key:
        raise ValueError(f"{path} is empty: delete it, or set REACH_TRACKING_SECRET")
    return key


def tracking_base(settings: Settings) -> str | None:
    """The base of the pixel and click URLs: the setting, else the HTTP API's own
    address (from the run file when it picked its port), None while it is unknown."""
    if settings.tracking_base_url:
        return settings.tracking_base_url.rstrip("/")
    running = runfile.read(settings.data_dir)
    if running is not None and running.http:
        return running.http.rstrip("/").replace("://0.0.0.0:", "://127.0.0.1:")
    if settings.http_port == 0:
        return None
    host = settings.http_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.http_port}"
