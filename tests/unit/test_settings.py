"""Settings from REACH_* environment variables, and the helpers next to them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.settings import Settings, bootstrap_servers


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the process environment: start every test without REACH_*."""
    for name in list(os.environ):
        if name.upper().startswith("REACH_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = Settings()
    assert settings.broker_url is None  # embedded broker
    assert settings.broker_storage == "durable"
    assert settings.broker_port is None
    assert settings.topic_prefix == "reach."
    assert settings.partitions == 4
    assert settings.table_store == "rocksdb"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8642)
    assert settings.api_keys == ""
    assert settings.max_record_bytes == 1_000_000
    assert settings.http_is_loopback


def test_environment_with_reach_prefix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REACH_BROKER_URL", "kafka://k1:9092,kafka://k2:9092")
    monkeypatch.setenv("REACH_PARTITIONS", "12")
    monkeypatch.setenv("REACH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REACH_TABLE_STORE", "memory")
    monkeypatch.setenv("REACH_PROJECTION_FLUSH_SECONDS", "0.25")
    monkeypatch.setenv("reach_http_port", "9000")  # names are case-insensitive
    monkeypatch.setenv("PARTITIONS", "99")  # no prefix: not ours
    settings = Settings()
    assert settings.broker_url == "kafka://k1:9092,kafka://k2:9092"
    assert settings.partitions == 12
    assert settings.data_dir == tmp_path
    assert settings.table_store == "memory"
    assert settings.projection_flush_seconds == 0.25
    assert settings.http_port == 9000


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACH_PARTITIONS", "12")
    assert Settings(partitions=2).partitions == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REACH_PARTITIONS", "0"),
        ("REACH_PARTITIONS", "1025"),
        ("REACH_PARTITIONS", "four"),
        ("REACH_TABLE_STORE", "redis"),
        ("REACH_TOPIC_PREFIX", ".reach"),
        ("REACH_TOPIC_PREFIX", "reach/"),
        ("REACH_CLICKHOUSE_DATABASE", "1reach"),
        ("REACH_CLICKHOUSE_DATABASE", "reach; DROP"),
        ("REACH_HTTP_PORT", "70000"),
        ("REACH_MAX_RECORD_BYTES", "100"),
        ("REACH_PROJECTION_FLUSH_SECONDS", "0"),
        ("REACH_BROKER_SESSION_TIMEOUT", "-1"),
        ("REACH_ROLE", "delivery,segments"),
        ("REACH_DELIVERY_RATE_PER_SECOND", '{"sms": 0}'),
        ("REACH_DELIVERY_RATE_PER_SECOND", "20"),
        ("REACH_DELIVERY_CONCURRENCY", "0"),
        ("REACH_DELIVERY_MAX_ATTEMPTS", "0"),
        ("REACH_SIMULATOR", '{"sms": {"opened": 2}}'),
    ],
)
def test_invalid_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.partitions = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.10.0.5", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_http_is_loopback(host: str, loopback: bool) -> None:
    assert Settings(http_host=host).http_is_loopback is loopback


def test_clickhouse_defaults_to_the_embedded_engine_in_the_data_dir(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).clickhouse == f"chdb://{(tmp_path / 'clickhouse').resolve()}"
    explicit = "http://user:pass@ch:8123"
    assert Settings(data_dir=tmp_path, clickhouse_dsn=explicit).clickhouse == explicit


@pytest.mark.parametrize(
    ("url", "servers"),
    [
        ("kafka://a:9092", "a:9092"),
        ("a:9092", "a:9092"),
        ("kafka://a:9092,kafka://b:9092", "a:9092,b:9092"),
        ("kafka://a:9092, kafka://b:9092 ", "a:9092,b:9092"),
        ("a:9092,kafka://b:9092", "a:9092,b:9092"),
        ("kafka://a:9092,,", "a:9092"),
        ("127.0.0.1:19092", "127.0.0.1:19092"),
    ],
)
def test_bootstrap_servers(url: str, servers: str) -> None:
    assert bootstrap_servers(url) == servers


def test_delivery_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACH_ROLE", "delivery")
    monkeypatch.setenv("REACH_DELIVERY_RATE_PER_SECOND", '{"sms": 20, "webhook": 2.5}')
    settings = Settings()
    assert settings.group_id == "reachstream-delivery"
    assert settings.delivers
    assert not settings.projects
    assert not settings.segments
    assert settings.delivery_rate_per_second == {"sms": 20, "webhook": 2.5}
    monkeypatch.setenv("REACH_DELIVER", "false")
    with pytest.raises(ValidationError, match="role delivery needs deliver=true"):
        Settings()
    monkeypatch.setenv("REACH_ROLE", "all")
    assert not Settings().delivers


def test_data_dir_is_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Resolved once, where the command starts: a later chdir changes nothing."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REACH_DATA_DIR", "somewhere/.reach")
    settings = Settings()
    assert settings.data_dir == tmp_path.resolve() / "somewhere" / ".reach"
    monkeypatch.delenv("REACH_DATA_DIR")
    assert Settings().data_dir == tmp_path.resolve() / ".reach"  # the default too
    monkeypatch.chdir("/")
    assert settings.data_dir == tmp_path.resolve() / "somewhere" / ".reach"
    assert (
        settings.clickhouse
        == f"chdb://{tmp_path.resolve() / 'somewhere' / '.reach' / 'clickhouse'}"
    )


def test_data_dir_expands_the_home_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("REACH_DATA_DIR", "~/reach-data")
    assert Settings().data_dir == tmp_path.resolve() / "reach-data"


def test_broker_storage_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACH_BROKER_STORAGE", "memory")
    monkeypatch.setenv("REACH_BROKER_PORT", "19092")
    settings = Settings()
    assert (settings.broker_storage, settings.broker_port) == ("memory", 19092)
    monkeypatch.setenv("REACH_BROKER_STORAGE", "disk")
    with pytest.raises(ValidationError, match="broker_storage"):
        Settings()
    monkeypatch.setenv("REACH_BROKER_STORAGE", "durable")
    monkeypatch.setenv("REACH_BROKER_PORT", "70000")
    with pytest.raises(ValidationError, match="broker_port"):
        Settings()
