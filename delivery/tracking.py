"""Open and click tracking for email: signed tokens, the pixel, click-redirect and
one-click unsubscribe URLs, and the HTML rewritten to use them.

A token carries what the feedback needs (command, user, channel and, for a click, the
target) and an HMAC-SHA256 over all of it, so the HTTP API can turn a request into
feedback without any lookup, and nobody without the key can forge a token or point a
click redirect elsewhere (no open redirect). Pure: no clock, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal

import orjson

from schemas.commands import SendCommand

Kind = Literal["open", "click", "unsubscribe"]
OPEN_PATH = "/t/o/"
CLICK_PATH = "/t/c/"
UNSUBSCRIBE_PATH = "/t/u/"
_DOMAIN = b"reach-tracking-v1\0"
"""Prefixed to what is signed, so the key signs nothing else by accident."""
_WEB = re.compile(r"^\s*https?://", re.IGNORECASE)
# One attribute of a start tag, as html.parser's own tokenizer reads it.
_ATTRIBUTE = re.compile(
    r"""(?P<name>[^\s/>][^\s/=>]*)(?:\s*=+\s*(?P<value>'[^']*'|"[^"]*"|(?!['"])[^>\s]*))?"""
)
_LINKING_TAGS = frozenset({"a", "area"})
"""Tags whose href a reader clicks; not <link>, <base> (stylesheets, the document's base)."""


@dataclass(frozen=True, slots=True)
class Tracked:
    """What a verified token says."""

    kind: Kind
    command_id: str
    user_id: str
    channel: str
    url: str | None
    """The click's target; None for the other kinds."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tracking:
    """Makes and reads tokens with one key (the ``tracking_secret`` setting)."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a tracking key must not be empty")
        self._key = key

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _DOMAIN + payload, hashlib.sha256).digest()

    def token(self, kind: Kind, command: SendCommand, url: str | None = None) -> str:
        fields = [kind, command.command_id, command.user_id, command.channel]
        if kind == "click":
            if url is None:
                raise ValueError("a click token needs its target")
            fields.append(url)
        payload = orjson.dumps(fields)
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def read(self, token: str, kind: Kind) -> Tracked | None:
        """What the token says, or None unless this key signed it for ``kind``."""
        encoded, dot, signature = token.partition(".")
        if not dot or len(token) > 16_384:
            return None
        try:
            payload, presented = _unb64(encoded), _unb64(signature)
        except ValueError:  # binascii.Error is one
            return None
        if not hmac.compare_digest(presented, self._sign(payload)):
            return None
        try:
            fields = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None  # signed, but not what ``token`` makes: refused like a forgery
        # The shape ``token`` makes, and nothing else: strings, five for a click.
        if (
            not isinstance(fields, list)
            or len(fields) != (5 if kind == "click" else 4)
            or not all(isinstance(field, str) for field in fields)
            or fields[0] != kind  # an open token is no click token, and the other way round
        ):
            return None
        url = fields[4] if kind == "click" else None
        return Tracked(kind, fields[1], fields[2], fields[3], url)

    def pixel_url(self, base: str, command: SendCommand) -> str:
        return f"{base.rstrip('/')}{OPEN_PATH}{self.token('open', command)}"

    def click_url(self, base: str, command: SendCommand, target: str) -> str:
        return f"{base.rstrip('/')}{CLICK_PATH}{self.token('click', command, target)}"

    def unsubscribe_url(self, base: str, command: SendCommand) -> str:
        """The ``List-Unsubscribe`` target (RFC 8058): a POST there opts the user out."""
        return f"{base.rstrip('/')}{UNSUBSCRIBE_PATH}{self.token('unsubscribe', command)}"

    def rewrite_links(self, document: str, base: str, command: SendCommand) -> str:
        """Every http(s) link of ``<a>`` / ``<area>`` through the click redirect, and the
        open pixel before the last ``</body>`` (at the end without one). Other links
        (``mailto:``, ``tel:``, ``#top``) and everything else stay as written."""
        scan = _Scan(document)
        edits: list[tuple[int, int, str]] = []
        for start, tag in scan.links:
            rewritten = _with_href(tag, lambda url: self.click_url(base, command, url))
            if rewritten != tag:
                edits.append((start, start + len(tag), rewritten))
        pixel = (
            f'<img src="{html.escape(self.pixel_url(base, command))}" width="1" height="1" '
            'alt="" style="display:block;border:0;width:1px;height:1px">'
        )
        at = len(document) if scan.body_end is None else scan.body_end
        edits.append((at, at, pixel))
        pieces: list[str] = []
        position = 0
        for start, end, text in sorted(edits):
            pieces += [document[position:start], text]
            position = end
        pieces.append(document[position:])
        return "".join(pieces)


class _Scan(HTMLParser):
    """Where the linking start tags and the last ``</body>`` are: html.parser knows
    comments, scripts and quoting, which a regex over the whole document does not."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self._lines = [0]
        for line in document.split("\n"):  # html.parser counts lines by "\n" alone
            self._lines.append(self._lines[-1] + len(line) + 1)
        self.links: list[tuple[int, str]] = []
        """(offset, the start tag exactly as written)."""
        self.body_end: int | None = None
        self.feed(document)
        self.close()

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._lines[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raw = self.get_starttag_text()
        if tag in _LINKING_TAGS and raw is not None:
            self.links.append((self._offset(), raw))

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()


def _with_href(tag: str, redirect: Callable[[str], str]) -> str:
    """``tag`` with each http(s) href replaced by ``redirect(target)``, quoted. Each:
    browsers read the first of duplicates, a sanitiser might keep another."""
    name = re.match(r"<[^\s/>]+", tag)
    if name is None:
        return tag
    pieces: list[str] = []
    position = 0
    for match in _ATTRIBUTE.finditer(tag, name.end()):
        value = match.group("value")
        if match.group("name").lower() != "href" or value is None:
            continue
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        target = html.unescape(value).strip()
        if _WEB.match(target):
            start, end = match.span("value")
            pieces += [tag[position:start], f'"{html.escape(redirect(target))}"']
            position = end
    pieces.append(tag[position:])
    return "".join(pieces)
