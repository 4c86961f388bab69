"""Email open and click tracking on the HTTP API: ``GET /t/o/{token}`` answers a 1x1
transparent GIF and ``GET /t/c/{token}`` redirects to the link's target, each
producing ``opened`` / ``clicked`` feedback onto the feedback topic, as ingest would.
``POST /t/u/{token}`` is the one-click unsubscribe of RFC 8058 (``unsubscribed``
feedback, which the journey engine turns into an opt-out of the channel);
``GET /t/u/{token}`` only shows a button that makes that POST, as link scanners GET.

No API key: recipients' mail clients open these (the routes are in
api/routes.py). The signed token is the check (see
delivery/tracking.py): one this system did not make answers 404.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable

from aiohttp import web
from pydantic import ValidationError

from delivery.tracking import (
    Kind,
    Tracked,
    Tracking,
)
from delivery.tracking_config import tracking_key
from schemas.feedback import Feedback, FeedbackStatus
from streams.engine import Engine
from streams.ingest import IngestProducer

log = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
"""A 1x1 transparent GIF."""
_WEB = re.compile(r"^https?://", re.IGNORECASE)
# Every open asks again (a cached pixel would hide the next open), and nothing keeps
# a redirect that produces feedback.
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private"}
# No action: the form posts to the page's own URL, whatever proxy path led there.
UNSUBSCRIBE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Unsubscribe</title></head>
<body><form method="post">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<p>Stop receiving these emails?</p><button type="submit">Unsubscribe</button>
</form></body></html>
"""


class TrackingRoutes:
    def __init__(self, engine: Engine, producer: Callable[[], IngestProducer]) -> None:
        self._engine = engine
        self._producer = producer
        self._tracking: Tracking | None = None

    def _read(self, request: web.Request, kind: Kind) -> Tracked:
        if self._tracking is None:  # at the first request: other routes need no key
            self._tracking = Tracking(tracking_key(self._engine.settings))
        tracked = self._tracking.read(request.match_info["token"], kind)
        if tracked is None:
            raise web.HTTPNotFound(text="not found")
        return tracked

    async def opened(self, request: web.Request) -> web.StreamResponse:
        tracked = self._read(request, "open")
        await self._record(request, tracked, FeedbackStatus.OPENED)
        return web.Response(body=PIXEL, content_type="image/gif", headers=NO_STORE)

    async def clicked(self, request: web.Request) -> web.StreamResponse:
        tracked = self._read(request, "click")
        if tracked.url is None or not _WEB.match(tracked.url):
            raise web.HTTPNotFound(text="not found")  # only ever a web page, whatever was signed
        await self._record(request, tracked, FeedbackStatus.CLICKED)
        raise web.HTTPFound(tracked.url, headers=NO_STORE)

    async def unsubscribe_page(self, request: web.Request) -> web.StreamResponse:
        self._read(request, "unsubscribe")  # a bad token is a 404 here too
        return web.Response(text=UNSUBSCRIBE_PAGE, content_type="text/html", headers=NO_STORE)

    async def unsubscribed(self, request: web.Request) -> web.StreamResponse:
        # The body (List-Unsubscribe=One-Click) is not checked: the token is the proof,
        # and RFC 8058 asks for no redirect, just an answer.
        tracked = self._read(request, "unsubscribe")
        if not await self._record(request, tracked, FeedbackStatus.UNSUBSCRIBED):
            # Unlike an open, an opt-out must not be lost: a 5xx has the sender retry.
            raise web.HTTPServiceUnavailable(text="please try again later", headers=NO_STORE)
        return web.Response(text="You are unsubscribed.\n", headers=NO_STORE)

    async def _record(self, request: web.Request, tracked: Tracked, status: FeedbackStatus) -> bool:
        """Whether the feedback went onto the topic (or there was none to send)."""
        if request.method == "HEAD":
            return True  # a link checker looking, not a reader
        try:
            feedback = Feedback(
                command_id=tracked.command_id,
                user_id=tracked.user_id,
                status=status,
                timestamp=self._engine.clock.now(),
                channel=tracked.channel,
            )
        except ValidationError:
            raise web.HTTPNotFound(text="not found") from None
        record = feedback.model_dump_json().encode()
        topic = self._engine.topics.feedback
        try:
            await self._producer().send_encoded(topic, [(feedback.user_id, record)])
        except Exception:  # the reader gets their page whatever happens to the feedback
            self._engine.counters["tracking_feedback_lost"] += 1
            log.exception("could not produce %s feedback for %s", status, tracked.command_id)
            return False
        return True
