"""
Test certificates, made at test time: a CA and server certificates signed
by it, written as PEM files for C{ssl:}/C{tls:} endpoint strings.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def makeCA(name: str) -> tuple[Any, Any]:
    """
    A self-signed CA: C{(key, certificate)}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def makeServerCert(caKey: Any, caCert: Any, hostname: str) -> tuple[Any, Any]:
    """
    A server certificate for C{hostname} (a DNS name or an IP address),
    signed by the CA: C{(key, certificate)}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        san = x509.DNSName(hostname)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(caCert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(caKey, hashes.SHA256())
    )
    return key, cert


def pem(obj: Any) -> bytes:
    """
    A key or certificate as PEM.
    """
    if hasattr(obj, "private_bytes"):
        return obj.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    return obj.public_bytes(serialization.Encoding.PEM)


def writeServerFiles(
    base: str, caName: str, hostname: str, caDir: str | None
) -> tuple[str, str]:
    """
    Write a server key and certificate for C{hostname} under C{base}; if
    C{caDir} is given, put the CA certificate there (a trust-roots
    directory for C{tls:} client strings).

    @return: C{(keyPath, certPath)}
    """
    os.makedirs(base, exist_ok=True)
    caKey, caCert = makeCA(caName)
    key, cert = makeServerCert(caKey, caCert, hostname)
    keyPath = os.path.join(base, "key.pem")
    certPath = os.path.join(base, "cert.pem")
    with open(keyPath, "wb") as f:
        f.write(pem(key))
    os.chmod(keyPath, 0o600)
    with open(certPath, "wb") as f:
        f.write(pem(cert))
    if caDir is not None:
        os.makedirs(caDir, exist_ok=True)
        with open(os.path.join(caDir, "ca.pem"), "wb") as f:
            f.write(pem(caCert))
    return keyPath, certPath
