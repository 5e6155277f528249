"""How every Kafka client connects: TLS, SASL and the start-up check, from Settings only.

Pacesetter talks to Kafka through Faust (the worker's group consumer), aiokafka (the worker's
producer and rebuild consumers, the API's read model) and kafka-python (the blocking admin and
the publisher of ``replay``/``import``/``simulate``). Each of them is given its connection
options here, so a force's cluster with TLS or SASL needs environment variables only.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from services.contract.errors import PacesetterError
from services.contract.settings import ENV_PREFIX, Settings

log = logging.getLogger(__name__)

CA_FILE = f"{ENV_PREFIX}KAFKA_SSL_CA_FILE"
CERT_FILES = f"{ENV_PREFIX}KAFKA_SSL_CERT_FILE and {ENV_PREFIX}KAFKA_SSL_KEY_FILE"
PROTOCOL = f"{ENV_PREFIX}KAFKA_SECURITY_PROTOCOL"
SASL_LOGIN = (f"{ENV_PREFIX}KAFKA_SASL_USERNAME, {ENV_PREFIX}KAFKA_SASL_PASSWORD (or _FILE) and "
              f"{ENV_PREFIX}KAFKA_SASL_MECHANISM")


class KafkaAccessError(PacesetterError):
    """The broker refused this client for good (untrusted certificate, wrong login).

    Retrying cannot help, so the program stops at start and the message names the setting.
    """


@dataclass(frozen=True)
class KafkaSecurity:
    """The connection options of every client, built once from Settings."""

    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def uses_ssl(self) -> bool:
        """Whether connections are TLS."""
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        """Whether connections log in with SASL."""
        return self.protocol.startswith("SASL_")

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_ssl:
            options["ssl_context"] = self.ssl_context
        if self.uses_sasl:
            options.update(sasl_mechanism=self.mechanism, sasl_plain_username=self.username,
                           sasl_plain_password=self.password)
        return options

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's producer and admin client."""
        options = self.aiokafka()
        if self.uses_ssl:
            # kafka-python takes the context whole, hostname verification included
            options["ssl_check_hostname"] = True
        return options


def security(settings: Settings) -> KafkaSecurity:
    """The connection options ``settings`` ask for.

    Raises:
        SettingsError: the password file cannot be read.
        KafkaAccessError: a CA, certificate or key file is not what it should be.
    """
    protocol = settings.kafka_security_protocol
    context = _ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if not protocol.startswith("SASL_"):
        return KafkaSecurity(protocol=protocol, ssl_context=context)
    return KafkaSecurity(protocol=protocol, mechanism=settings.kafka_sasl_mechanism,
                         username=settings.kafka_sasl_username,
                         password=settings.kafka_sasl_secret(), ssl_context=context)


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context: the given CA (else the system's), hostname verification on."""
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_file or None)
    except (ssl.SSLError, OSError) as exc:
        raise KafkaAccessError(f"{CA_FILE}: {settings.kafka_ssl_ca_file!r} is not a PEM CA "
                               f"certificate ({exc})") from None
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if settings.kafka_ssl_cert_file:
        try:
            context.load_cert_chain(settings.kafka_ssl_cert_file, settings.kafka_ssl_key_file)
        except (ssl.SSLError, OSError) as exc:
            raise KafkaAccessError(f"{CERT_FILES}: not a PEM certificate and its matching "
                                   f"private key ({exc})") from None
    return context


def check_access(settings: Settings, bootstrap: str | None = None,
                 timeout_seconds: float = 30.0, require_answer: bool = True) -> None:
    """Connect to a bootstrap server as every client will, and stop early on a refusal.

    A refused TLS handshake or SASL login repeats forever inside the client libraries (or
    ends in a bare "unable to bootstrap"); this check names the setting to fix instead.
    Unreachable brokers are retried until ``timeout_seconds``: they may still be starting.
    With ``require_answer`` false, a broker that never answers is left for the caller to
    wait for (the API serves "not ready" meanwhile); only a refusal raises.

    Raises:
        KafkaAccessError: the broker's certificate is not trusted, TLS failed, or the login
            was refused; or (``require_answer``) no broker answered in time.
    """
    servers = [s.strip() for s in (bootstrap or settings.bootstrap_servers).split(",")
               if s.strip()]
    options = security(settings)
    problem: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(_probe(servers, options, timeout_seconds, require_answer))
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            problem.append(exc)

    # its own thread and loop: callers may be inside a running event loop
    thread = threading.Thread(target=run, name="kafka-access-check", daemon=True)
    thread.start()
    thread.join(timeout_seconds + 10)
    if problem:
        raise problem[0]


async def _probe(servers: list[str], options: KafkaSecurity, timeout_seconds: float,
                 require_answer: bool) -> None:
    from aiokafka.conn import create_conn
    from aiokafka.protocol.metadata import MetadataRequest

    deadline = time.monotonic() + timeout_seconds
    last: BaseException | None = None
    refusals = 0
    while True:
        for server in servers:
            host, _, port = server.rpartition(":")
            left = deadline - time.monotonic()
            try:
                conn = await asyncio.wait_for(create_conn(
                    host.strip("[]"), int(port), request_timeout_ms=max(1000, int(left * 1000)),
                    client_id="pacesetter-check", **options.aiokafka()), max(1.0, left))
                try:
                    # a refused client certificate shows only once a request is answered
                    await asyncio.wait_for(conn.send(MetadataRequest([])), max(1.0, left))
                finally:
                    conn.close()
            except ssl.SSLCertVerificationError as exc:
                raise KafkaAccessError(
                    f"the certificate of the Kafka broker at {server} is not trusted "
                    f"({exc.verify_message}): set {CA_FILE} to the CA certificate that signed "
                    f"it, and use a bootstrap address its certificate names") from None
            except ssl.SSLError as exc:
                raise KafkaAccessError(
                    f"TLS with the Kafka broker at {server} failed ({exc.reason or exc}): check "
                    f"{PROTOCOL} matches its listener, and {CERT_FILES} if it asks for a "
                    "client certificate") from None
            except (TimeoutError, OSError) as exc:
                last = exc  # not there yet: try again until the deadline
                continue
            except Exception as exc:  # noqa: BLE001 - anything else came from the login
                if not options.uses_sasl:
                    # Connected, then the first request was cut off: a broker that wants a
                    # login or a client certificate does that. Three times is not a restart.
                    last = exc
                    refusals += 1
                    if refusals >= 3:
                        raise KafkaAccessError(
                            f"the Kafka broker at {server} closes the connection at the first "
                            f"request ({exc}): {PROTOCOL} is {options.protocol}; if its "
                            f"listener is TLS set it to SSL (or SASL_SSL), if it requires a "
                            f"login to SASL_SSL (or SASL_PLAINTEXT) with {SASL_LOGIN}, if it "
                            f"requires a client certificate set {CERT_FILES}") from None
                    continue
                raise KafkaAccessError(
                    f"the Kafka broker at {server} refused the SASL {options.mechanism} login "
                    f"of {options.username!r} ({type(exc).__name__}: {exc}): check "
                    f"{SASL_LOGIN}") from None
            return
        if time.monotonic() >= deadline:
            if not require_answer:
                return
            hint = "" if options.uses_ssl else f" (if its listener is TLS, set {PROTOCOL})"
            raise KafkaAccessError(
                f"no Kafka broker answered at {','.join(servers)} within {timeout_seconds:g} s"
                f"{hint}: {last}; check {ENV_PREFIX}BOOTSTRAP_SERVERS")
        await asyncio.sleep(0.2)
