"""TLS for both servers and both clients: contexts and self-signed certificates.

The standard library's `ssl` does the protocol with its secure defaults
(TLS 1.2 or newer here, no compression); `cryptography` makes certificates
for a small deployment that has no certificate authority of its own.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
CERT_DAYS = 825  # the longest validity common clients still accept for a leaf certificate
DEFAULT_HOSTS = ("localhost", "127.0.0.1")


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """Raises OSError or ssl.SSLError when the files are missing or do not match."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.load_cert_chain(cert, key)
    return context


def client_context(ca: Path | None, insecure: bool) -> ssl.SSLContext:
    """Verifies the certificate and host name against `ca` or the system store, unless insecure."""
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def make_certificate(out: Path, hosts: tuple[str, ...] = DEFAULT_HOSTS) -> tuple[Path, Path]:
    """A self-signed certificate for `hosts` and its key (mode 0600) in `out`.

    Refuses to overwrite an existing key: a deployment's clients trust it.
    """
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out / CERT_FILE, out / KEY_FILE
    for path in (cert_path, key_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; remove it first to make a new certificate")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as key_file:
        key_file.write(key_bytes)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
