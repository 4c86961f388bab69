"""Tracking tokens and the HTML of a tracked email: signed, refused when altered, and
links rewritten without touching anything else."""

from __future__ import annotations

import base64
import os
import re
import stat
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from delivery.tracking import Tracking
from delivery.tracking_config import KEY_FILE, tracking_base, tracking_key
from schemas.commands import SendCommand, command_id
from streams import runfile
from streams.settings import Settings

BASE = "https://reach.example.com"
KEY = b"k" * 32


def command(user: str = "u-1") -> SendCommand:
    return SendCommand(
        command_id=command_id("winback", 1, "r1", user, "first-email", 0),
        user_id=user,
        channel="email",
        preset="we-miss-you",
        journey_id="winback",
        journey_version=1,
        run="r1",
        step="first-email",
        visit=0,
        at=datetime(2026, 11, 1, 9, tzinfo=UTC),
        address=f"{user}@example.com",
    )


TRACKING = Tracking(KEY)
COMMAND = command()


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


# --- tokens ------------------------------------------------------------------------------


def test_tokens_round_trip() -> None:
    opened = TRACKING.read(token_of(TRACKING.pixel_url(BASE, COMMAND)), "open")
    assert opened is not None
    assert (opened.command_id, opened.user_id, opened.channel, opened.url) == (
        COMMAND.command_id,
        "u-1",
        "email",
        None,
    )
    target = "https://shop.example.com/cart?id=7&utm_source=email#top"
    clicked = TRACKING.read(token_of(TRACKING.click_url(BASE, COMMAND, target)), "click")
    assert clicked is not None
    assert (clicked.kind, clicked.url, clicked.user_id) == ("click", target, "u-1")
    # URL-safe as they are: nothing to quote in a path.
    assert re.fullmatch(
        r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", token_of(TRACKING.pixel_url(BASE, COMMAND))
    )


def test_an_altered_or_foreign_token_is_refused() -> None:
    token = TRACKING.token("click", COMMAND, "https://shop.example.com/")
    payload, signature = token.split(".")
    # Another target (or user) signed by nobody: refused, so no open redirect.
    other = Tracking(b"another key, another system").token("click", COMMAND, "https://evil.test/")
    assert TRACKING.read(other, "click") is None
    forged = other.split(".")[0] + "." + signature
    assert TRACKING.read(forged, "click") is None
    for position in (0, len(payload) // 2, len(payload) - 1):
        flipped = "A" if payload[position] != "A" else "B"
        altered = payload[:position] + flipped + payload[position + 1 :]
        assert TRACKING.read(f"{altered}.{signature}", "click") is None
    assert TRACKING.read(f"{payload}.{signature[:-2]}", "click") is None
    assert TRACKING.read(token, "open") is None  # a click token opens nothing
    opened = TRACKING.token("open", COMMAND)
    assert TRACKING.read(opened, "click") is None
    for garbage in ("", ".", "abc", "a.b", "!!!.???", "é.é", "x" * 20_000 + ".y"):
        assert TRACKING.read(garbage, "open") is None
    assert TRACKING.read(token, "click") is not None


def test_an_unsubscribe_token_round_trips_and_is_its_own_kind() -> None:
    url = TRACKING.unsubscribe_url(BASE + "/", COMMAND)
    assert url.startswith(f"{BASE}/t/u/")
    token = token_of(url)
    tracked = TRACKING.read(token, "unsubscribe")
    assert tracked is not None
    assert (tracked.kind, tracked.command_id, tracked.user_id, tracked.channel, tracked.url) == (
        "unsubscribe",
        COMMAND.command_id,
        "u-1",
        "email",
        None,
    )
    # Only an unsubscribe token unsubscribes, and only unaltered.
    assert TRACKING.read(TRACKING.token("open", COMMAND), "unsubscribe") is None
    assert TRACKING.read(token, "open") is None
    payload, signature = token.split(".")
    flipped = "A" if payload[5] != "A" else "B"
    assert TRACKING.read(f"{payload[:5]}{flipped}{payload[6:]}.{signature}", "unsubscribe") is None
    foreign = Tracking(b"another key").token("unsubscribe", COMMAND)
    assert TRACKING.read(foreign, "unsubscribe") is None


def test_a_click_token_needs_its_target_and_a_key_is_required() -> None:
    with pytest.raises(ValueError, match="target"):
        TRACKING.token("click", COMMAND)
    with pytest.raises(ValueError, match="empty"):
        Tracking(b"")


# --- links -------------------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self, document: str) -> None:
        super().__init__()
        self.hrefs: list[str | None] = []
        self.images: list[str | None] = []
        self.feed(document)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("a", "area", "link"):
            # The first of duplicates, as browsers read them.
            self.hrefs.append(next((value for name, value in attrs if name == "href"), None))
        if tag == "img":
            self.images.append(dict(attrs).get("src"))


def targets(document: str) -> list[str | None]:
    """Each link's target, read back through its click token where it has one."""
    found: list[str | None] = []
    for href in _Links(document).hrefs:
        if href is not None and href.startswith(f"{BASE}/t/c/"):
            tracked = TRACKING.read(token_of(href), "click")
            assert tracked is not None
            found.append(f"tracked {tracked.url}")
        else:
            found.append(href)
    return found


def rewrite(document: str) -> str:
    return TRACKING.rewrite_links(document, BASE, COMMAND)


def test_links_of_every_quoting_go_through_the_redirect() -> None:
    document = (
        "<html><body>"
        '<a href="https://a.example.com/x?q=1&amp;r=2">double</a>'
        "<a class=button href='http://b.example.com/'>single</a>"
        "<a href=https://c.example.com/y>bare</a>"
        '<A HREF = " HTTPS://d.example.com/Z " title="upper">upper</A>'
        '<area shape="rect" href="https://e.example.com/map">'
        "</body></html>"
    )
    assert targets(rewrite(document)) == [
        "tracked https://a.example.com/x?q=1&r=2",  # the link as the reader's browser reads it
        "tracked http://b.example.com/",
        "tracked https://c.example.com/y",
        "tracked HTTPS://d.example.com/Z",
        "tracked https://e.example.com/map",
    ]


def test_other_links_and_everything_else_stay_as_written() -> None:
    document = (
        "<p>Write to <a href='mailto:help@example.com?subject=Hi'>us</a>, "
        '<a href="tel:+351210000000">call</a>, <a href="#top">go up</a>, '
        '<a name="anchor">no href</a>, <a href="">empty</a>, <a href>bare attribute</a>.</p>'
        '<link rel="stylesheet" href="https://fonts.example.com/a.css">'
        "<!-- <a href='https://commented.example.com/'>old</a> -->"
        "<script>var s = '<a href=\"https://script.example.com/\">';</script>"
        '<p>Plain text: href="https://text.example.com/" stays.</p>'
    )
    rewritten = rewrite(document)
    pixel = re.search(r"<img [^>]*>$", rewritten)
    assert pixel is not None  # no </body>: the pixel goes at the end
    assert rewritten[: pixel.start()] == document


def test_attribute_values_that_look_like_an_href_do_not_confuse_it() -> None:
    document = (
        '<a title="href=https://decoy.example.com/" data-x=\'href="x"\' '
        'href="https://real.example.com/?a=1&b=2">x</a>'
        '<a href="https://twice.example.com/one" href="https://twice.example.com/two">y</a>'
    )
    rewritten = rewrite(document)
    assert targets(rewritten) == [
        "tracked https://real.example.com/?a=1&b=2",
        "tracked https://twice.example.com/one",
    ]
    assert 'title="href=https://decoy.example.com/"' in rewritten
    assert "twice.example.com" not in rewritten  # the second href is tracked too
    assert "data-x='href=\"x\"'" in rewritten


def test_the_pixel_goes_before_the_last_body_end_and_opens() -> None:
    document = (
        "<HTML><body>\n<p>Olá {name}, 🎉</p>\n"
        "<pre>no </body> here</pre>\n<a href='https://x.example.com/'>x</a>\n"
        "</BODY >\n</HTML>\n"
    )
    rewritten = rewrite(document)
    images = _Links(rewritten).images
    assert len(images) == 1
    assert images[0] is not None
    opened = TRACKING.read(token_of(images[0]), "open")
    assert opened is not None
    assert opened.command_id == COMMAND.command_id
    assert rewritten.endswith("</BODY >\n</HTML>\n")
    assert re.search(r'<img src="[^"]+" width="1" height="1" alt=""[^>]*></BODY >', rewritten)
    assert rewritten.startswith("<HTML><body>\n<p>Olá {name}, 🎉</p>\n<pre>no ")
    assert targets(rewritten) == ["tracked https://x.example.com/"]


def test_each_user_gets_their_own_tokens() -> None:
    document = '<a href="https://x.example.com/">x</a>'
    one, other = rewrite(document), TRACKING.rewrite_links(document, BASE, command("u-2"))
    assert one != other
    href = _Links(other).hrefs[0]
    assert href is not None
    tracked = TRACKING.read(token_of(href), "click")
    assert tracked is not None
    assert tracked.user_id == "u-2"


# --- the key and the base URL ---------------------------------------------------------------


def test_the_key_is_the_setting_else_one_kept_in_the_data_dir(tmp_path: Path) -> None:
    assert tracking_key(Settings(tracking_secret="s3cret", data_dir=tmp_path)) == b"s3cret"
    assert not (tmp_path / KEY_FILE).exists()
    settings = Settings(data_dir=tmp_path / "data")
    key = tracking_key(settings)
    assert len(key) >= 32
    assert tracking_key(settings) == key  # the same on every read: links keep working
    assert stat.S_IMODE(os.stat(tmp_path / "data" / KEY_FILE).st_mode) == 0o600
    assert [path.name for path in (tmp_path / "data").iterdir()] == [KEY_FILE]


def test_the_base_url(tmp_path: Path) -> None:
    def base(**values: object) -> str | None:
        return tracking_base(Settings(data_dir=tmp_path, **values))  # type: ignore[arg-type]

    assert base(tracking_base_url="https://reach.example.com/") == "https://reach.example.com"
    assert base() == "http://127.0.0.1:8642"
    assert base(http_host="0.0.0.0", http_port=9000) == "http://127.0.0.1:9000"
    assert base(http_host="::1") == "http://[::1]:8642"
    assert base(http_port=0) is None  # not known until the API has started
    runfile.write(tmp_path, runfile.RunInfo(os.getpid(), "127.0.0.1:9092", "http://127.0.0.1:4321"))
    assert base(http_port=0) == "http://127.0.0.1:4321"


def test_signed_payloads_of_a_wrong_shape_read_as_nothing() -> None:
    tracking = Tracking(b"k")
    for payload in (b"nope", b"{}", b"[]", b'["open"]', b'["open", 1, 2, 3]', b"[null]"):
        signature = base64.urlsafe_b64encode(tracking._sign(payload)).rstrip(b"=").decode()
        token = base64.urlsafe_b64encode(payload).rstrip(b"=").decode() + "." + signature
        for kind in ("open", "click", "unsubscribe"):
            assert tracking.read(token, kind) is None
