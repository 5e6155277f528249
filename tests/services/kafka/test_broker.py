"""The embedded broker: ``pacesetter broker``, port checks, waiting for Kafka and topic admin."""

from __future__ import annotations

import selectors
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from services.kafka.broker import (
    BrokerError,
    EmbeddedBroker,
    ensure_topics,
    free_port,
    port_is_free,
    wait_for_kafka,
)

ROOT = Path(__file__).resolve().parents[3]


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line of the process's stdout, or fail after ``timeout`` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no output within {timeout} s")
    return proc.stdout.readline()


@pytest.fixture
def broker_command() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``pacesetter broker`` on a free port, stopped (SIGTERM) after the test if still running."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pacesetter.cli", "broker", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # lets it stop its tansu child too
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_broker_command_serves_refuses_a_taken_port_and_stops_on_sigterm(
    broker_command: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = broker_command
    line = read_line(proc, timeout=30)
    assert line.strip() == f"bootstrap: 127.0.0.1:{port}"

    # it accepts Kafka connections as soon as it says so
    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", request_timeout_ms=5000)
    try:
        assert isinstance(admin.list_topics(), list)
    finally:
        admin.close()

    # a second broker on the same port says plainly that the port is taken
    second = subprocess.run(
        [sys.executable, "-m", "pacesetter.cli", "broker", "--port", str(port)],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )
    assert second.returncode != 0
    message = second.stdout + second.stderr
    assert str(port) in message and "in use" in message
    assert "Traceback" not in message
    assert proc.poll() is None  # the first one is unaffected

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert time.monotonic() - started < 10
    assert port_is_free("127.0.0.1", port)  # the broker process went with it


def test_port_checks() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        assert not port_is_free("127.0.0.1", taken)
        with pytest.raises(BrokerError) as info:
            EmbeddedBroker("127.0.0.1", taken).start()
        assert str(taken) in str(info.value) and "in use" in str(info.value)
    port = free_port()
    assert port_is_free("127.0.0.1", port)


def test_waiting_for_an_absent_broker_gives_up_on_time() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        started = time.monotonic()
        with pytest.raises(BrokerError) as info:
            wait_for_kafka(f"127.0.0.1:{port}", timeout_seconds=2)
        elapsed = time.monotonic() - started
    assert f"127.0.0.1:{port}" in str(info.value)
    assert elapsed < 8, f"asked to wait 2 s, waited {elapsed:.1f} s"


def test_ensure_topics_creates_only_the_missing_ones(bootstrap: str) -> None:
    tag = uuid.uuid4().hex[:8]
    a, b = f"t{tag}.a", f"t{tag}.b"
    assert ensure_topics(bootstrap, [a], partitions=3) == [a]
    assert ensure_topics(bootstrap, [a, b], partitions=2) == [b]
    assert ensure_topics(bootstrap, [a, b], partitions=2) == []
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        described = {t["name"]: len(t["partitions"]) for t in admin.describe_topics([a, b])}
    finally:
        admin.close()
    assert described == {a: 3, b: 2}
