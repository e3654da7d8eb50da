"""A throwaway CA with a server certificate for 127.0.0.1 and a client certificate, for the
etcd TLS tests (made with `cryptography`: a fresh machine may have no openssl binary)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gitconf.embedded_etcd import TLSFiles


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def make_tls(directory: Path) -> TLSFiles:
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gitconf test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(name: str, usage: x509.ObjectIdentifier) -> tuple[x509.Certificate,
                                                               ec.EllipticCurvePrivateKey]:
        key = _key()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        return cert, key

    server, server_key = leaf("etcd", ExtendedKeyUsageOID.SERVER_AUTH)
    client, client_key = leaf("root", ExtendedKeyUsageOID.CLIENT_AUTH)
    files = TLSFiles(ca=str(directory / "ca.pem"), server_cert=str(directory / "server.pem"),
                     server_key=str(directory / "server-key.pem"),
                     client_cert=str(directory / "client.pem"),
                     client_key=str(directory / "client-key.pem"))
    Path(files.ca).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    Path(files.server_cert).write_bytes(server.public_bytes(serialization.Encoding.PEM))
    Path(files.client_cert).write_bytes(client.public_bytes(serialization.Encoding.PEM))
    _write_key(Path(files.server_key), server_key)
    _write_key(Path(files.client_key), client_key)
    return files
