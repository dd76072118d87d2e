"""A local CA and server certificate for the local S3 on 127.0.0.1, kept while valid.

``tls_files(folder)`` reuses what an earlier start wrote to ``folder`` while it is still
good (readable, the certificate signed by the CA, matching its key, for 127.0.0.1, and more
than ``RENEW_DAYS`` from expiry); otherwise ``make_tls_files(folder)`` writes new ones:

- ``ca.pem``: a CA certificate, what clients trust (``AWS_CA_BUNDLE``, ``verify=``); its
  private key only ever exists in memory and is discarded once the server certificate is
  signed, so nothing else can ever be signed by it (which is why an expiring server
  certificate brings a new CA with it);
- ``server.pem`` and ``server.key`` (mode 0600): the server's certificate for ``127.0.0.1``
  and ``localhost``, signed by that CA.

So a restarted server keeps its CA, and a client holding ``ca.pem`` keeps trusting it; when
a new CA is made, clients that read ``ca.pem`` when they create their S3 client (botocore
does) trust the new one. Nothing here is a secret worth keeping: the server listens on the
loopback address and holds demo data only.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.private_files import private_dir

HOST = "127.0.0.1"
VALID_DAYS = 365
RENEW_DAYS = 7  # renewed this close to expiry: a served demo may run for days


@dataclass(frozen=True)
class TlsFiles:
    """Where the CA certificate, the server certificate and its key are."""

    folder: Path

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def key(self) -> Path:
        return self.folder / "server.key"

    def server_context(self) -> ssl.SSLContext:
        """The server side: TLS 1.2 or later with this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A client side that trusts this CA only (and checks the host name)."""
        return ssl.create_default_context(cafile=str(self.ca))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically with ``data``, created with ``mode`` whatever the umask."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)
    tmp.replace(path)


def make_tls_files(folder: Path, now: datetime | None = None) -> TlsFiles:
    """A new CA and server certificate in ``folder`` (created mode 0700), replacing any."""
    now = now or datetime.now(UTC)
    start, end = now - timedelta(minutes=5), now + timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("lifecycle local S3 CA (throwaway)")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(HOST))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(private_dir(folder))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(files.key, key_pem, 0o600)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o600)
    _write(files.ca, ca.public_bytes(serialization.Encoding.PEM), 0o644)
    return files


def tls_files(folder: Path, now: datetime | None = None) -> TlsFiles:
    """The CA and certificate in ``folder`` if still good, else new ones; see the module doc."""
    now = now or datetime.now(UTC)
    files = TlsFiles(folder)
    return files if _still_good(files, now) else make_tls_files(folder, now)


def _still_good(files: TlsFiles, now: datetime) -> bool:
    """Whether ``files`` hold a CA and a server certificate this server can keep serving."""
    try:
        ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        files.server_context()  # what the server will load: refused here, not at serving
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound, ssl.SSLError):
        return False  # missing, unreadable or not signed by this CA: made anew
    renew_by = now + timedelta(days=RENEW_DAYS)
    return (
        all(c.not_valid_before_utc <= now and c.not_valid_after_utc > renew_by for c in (ca, cert))
        and key.public_key() == cert.public_key()
        and ipaddress.ip_address(HOST) in names.get_values_for_type(x509.IPAddress)
    )
