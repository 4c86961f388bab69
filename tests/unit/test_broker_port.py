"""The embedded broker's port: fixed by a setting, else the one this data directory used
last time, else a free one; a busy port is one line naming it and the setting."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.broker import PORT_FILE, BrokerUnavailable, broker_port, record_port
from streams.processes import free_port


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_new_data_dir_gets_a_free_port_and_keeps_it(tmp_path: Path) -> None:
    port = broker_port(tmp_path, None)
    record_port(tmp_path, port)
    assert (tmp_path / PORT_FILE).read_text().strip() == str(port)
    assert broker_port(tmp_path, None) == port
    assert broker_port(tmp_path, None) == port


def test_the_setting_wins_over_the_recorded_port(tmp_path: Path) -> None:
    record_port(tmp_path, free_port())
    fixed = free_port()
    assert broker_port(tmp_path, fixed) == fixed


def test_a_recorded_port_in_use_is_one_line_naming_it(tmp_path: Path, busy_port: int) -> None:
    record_port(tmp_path, busy_port)
    with pytest.raises(BrokerUnavailable) as raised:
        broker_port(tmp_path, None)
    message = str(raised.value)
    assert f"broker port {busy_port} is in use" in message
    assert "REACH_BROKER_PORT" in message
    assert "\n" not in message


def test_a_fixed_port_in_use_names_the_setting(tmp_path: Path, busy_port: int) -> None:
    with pytest.raises(BrokerUnavailable, match=f"port {busy_port} is in use .REACH_BROKER_PORT"):
        broker_port(tmp_path, busy_port)


@pytest.mark.parametrize("content", ["", "not a port", "70000", "0", "9" * 1000])
def test_a_damaged_port_file_means_a_new_port(tmp_path: Path, content: str) -> None:
    (tmp_path / PORT_FILE).write_text(content)
    port = broker_port(tmp_path, None)
    assert 0 < port < 65536
