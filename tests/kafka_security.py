"""Secured Kafka for tests: a CA and certificates made here, a TLS-terminating proxy, tansu.

tansu 0.6's ``--cert``/``--key`` do not start a TLS listener, so TLS is proven through a proxy
in front of it: tansu advertises the proxy's address, so every connection a client makes
(bootstrap, then the advertised broker) goes through TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services.kafka.broker import broker_binary, free_port


@dataclass(frozen=True)
class Pki:
    """Paths of a CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed none of these


def make_pki(folder: Path) -> Pki:
    """A fresh CA signing a server and a client certificate, and an unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    def ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .sign(key, hashes.SHA256()))
        return key, cert

    def leaf(name: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
             server: bool) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(issuer[1].subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       issuer[1].public_key()), critical=False)  # type: ignore[arg-type]
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.SERVER_AUTH if server
                        else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        return key, builder.sign(issuer[0], hashes.SHA256())

    root = ca("pacesetter test CA")
    other = ca("some other CA")
    server = leaf("kafka", root, server=True)
    client = leaf("pacesetter", root, server=False)
    pki = Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key",
              folder / "client.pem", folder / "client.key", folder / "other-ca.pem")
    pem = serialization.Encoding.PEM
    pki.ca.write_bytes(root[1].public_bytes(pem))
    pki.other_ca.write_bytes(other[1].public_bytes(pem))
    pki.server_cert.write_bytes(server[1].public_bytes(pem))
    write_key(server[0], pki.server_key)
    pki.client_cert.write_bytes(client[1].public_bytes(pem))
    write_key(client[0], pki.client_key)
    return pki


class TlsProxy:
    """Terminates TLS on ``port`` and forwards the plain bytes to ``target``, in a thread."""

    def __init__(self, target: tuple[str, int], pki: Pki, port: int,
                 require_client_cert: bool = False):
        self.target = target
        self.port = port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            self.context.load_verify_locations(pki.ca)
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                       name="tls-proxy")
        self.server: asyncio.base_events.Server | None = None

    def start(self) -> TlsProxy:
        """Listen; returns once connections are accepted."""
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(asyncio.start_server(
            self._serve, "127.0.0.1", self.port, ssl=self.context), self.loop).result(10)
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def stop(self) -> None:
        """Stop listening and the thread."""
        async def shut() -> None:
            if self.server is not None:
                self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Tansu:
    """tansu as a child process listening on ``port`` and advertising ``advertised``."""

    def __init__(self, port: int, advertised: str, authentication: bool = False,
                 log_path: Path | None = None):
        self.port = port
        args = [broker_binary(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
                "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"]
        if authentication:
            args.append("--authentication")
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(  # noqa: S603 - the test's own broker
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, RUST_LOG="warn"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("tansu did not start")

    def stop(self) -> None:
        """Stop the broker."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@contextlib.contextmanager
def tls_broker(pki: Pki, require_client_cert: bool = False,
               log_path: Path | None = None) -> Iterator[str]:
    """tansu reachable only through TLS: yields the bootstrap address (``127.0.0.1:PORT``)."""
    public = free_port()
    broker = Tansu(free_port(), f"tcp://127.0.0.1:{public}", log_path=log_path)
    proxy = TlsProxy(("127.0.0.1", broker.port), pki, public, require_client_cert).start()
    try:
        yield f"127.0.0.1:{public}"
    finally:
        proxy.stop()
        broker.stop()


@contextlib.contextmanager
def authenticating_broker(log_path: Path | None = None) -> Iterator[str]:
    """tansu with ``--authentication``: yields its bootstrap address."""
    port = free_port()
    broker = Tansu(port, f"tcp://127.0.0.1:{port}", authentication=True, log_path=log_path)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        broker.stop()
