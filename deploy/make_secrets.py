"""Make what docker-compose needs to run safely, once: `python deploy/make_secrets.py`.

Writes `.env` beside docker-compose.yml (the relay secret shared by workers and gateways, the
payload encryption keyring and the codec server's token) and `deploy/secrets/` (a self-signed
TLS certificate for the gateway, valid for `localhost` and `gateway`). Nothing is overwritten:
delete a file to make it anew. Replace the certificate with your own for anything public.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
SECRETS = ROOT / "deploy" / "secrets"


def write_env(path: Path) -> None:
    if path.exists():
        print(f"kept {path}")
        return
    key_id = datetime.date.today().strftime("%Y%m%d")
    values = {
        "ENGRAM_RELAY_SECRET": secrets.token_hex(32),
        "ENGRAM_ENCRYPTION_KEYS": f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}",
        "ENGRAM_CODEC_SERVER_TOKEN": secrets.token_urlsafe(32),
    }
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    print(f"wrote {path}")


def write_certificate(directory: Path) -> None:
    cert_path, key_path = directory / "gateway.crt", directory / "gateway.key"
    if cert_path.exists() and key_path.exists():
        print(f"kept {cert_path}")
        return
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "engram gateway")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("gateway"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # Read by the gateway's container user (uid 10001), which is no one on the host.
    key_path.chmod(0o644)
    print(f"wrote {cert_path} and {key_path}")


if __name__ == "__main__":
    write_env(ROOT / ".env")
    write_certificate(SECRETS)
