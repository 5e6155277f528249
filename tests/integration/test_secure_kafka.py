"""replay -> worker -> API on a Kafka reachable only over TLS; refusals stop at start, by name.

tansu 0.6 does not start a TLS listener itself: a TLS-terminating proxy made by the test sits in
front of it and the broker advertises the proxy's address, so every connection is TLS
(tests/kafka_security.py). SASL/SCRAM: see tests/services/kafka/test_clients.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from services.kafka.broker import free_port
from services.simulation.simulator import simulate_events
from tests.integration.harness import ROOT, Process, topic_env
from tests.integration.test_api_faults import settled_intervals, start_api
from tests.integration.test_worker import expected
from tests.kafka_security import make_pki, tls_broker

pytestmark = pytest.mark.integration


def test_replay_worker_and_api_are_exact_over_tls_with_mutual_certificates(
        tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with tls_broker(pki, require_client_cert=True, log_path=tmp_path / "broker.log") as bootstrap:
        env = topic_env(bootstrap, tmp_path)
        env.update(PACESETTER_KAFKA_SECURITY_PROTOCOL="SSL",
                   PACESETTER_KAFKA_SSL_CA_FILE=str(pki.ca),
                   PACESETTER_KAFKA_SSL_CERT_FILE=str(pki.client_cert),
                   PACESETTER_KAFKA_SSL_KEY_FILE=str(pki.client_key))
        lines = [orjson.dumps(e) for e in simulate_events(rooms=1, days=0.25, seed=83)]
        feed = tmp_path / "events.jsonl"
        feed.write_bytes(b"\n".join(lines) + b"\n")
        want = expected(lines)

        replay = subprocess.run([sys.executable, "-m", "pacesetter.cli", "replay", str(feed)],
                                cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env},
                                capture_output=True, timeout=180)
        assert replay.returncode == 0, replay.stderr.decode()[-2000:]

        port = free_port()
        worker = Process(["worker"], env, tmp_path / "worker.log")
        api = start_api(env, port, tmp_path / "api.log")
        try:
            rows = settled_intervals(f"http://127.0.0.1:{port}", "north", 150)
            got = {f"{r['room']}|{r['line']}|{r['interval_start']}": r for r in rows}
            wanted = {k: r for k, r in want.intervals.items() if r["room"] == "north"}
            assert set(got) == set(wanted)
            for key, record in wanted.items():
                for name in ("offered", "answered", "abandoned", "final"):
                    assert got[key][name] == record[name], (key, name)
            assert worker.metrics()["pacesetter_worker_broker_connected"] == 1
        finally:
            api.stop()
            worker.stop()


def test_a_worker_without_the_ca_stops_within_30_seconds_naming_it(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    with tls_broker(pki) as bootstrap:
        env = {**topic_env(bootstrap, tmp_path), "PATH": "/usr/bin:/bin",
               "PACESETTER_KAFKA_SECURITY_PROTOCOL": "SSL",
               "PACESETTER_KAFKA_SSL_CA_FILE": str(pki.other_ca)}
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pacesetter.cli", "worker"], cwd=ROOT,
                              env=env, capture_output=True, timeout=60)
        assert time.monotonic() - started < 30
        assert done.returncode != 0
        assert b"PACESETTER_KAFKA_SSL_CA_FILE" in done.stderr
