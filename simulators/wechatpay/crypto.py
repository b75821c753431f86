"""The fake's own cryptography (it is "another company": it shares no code with piaohao).

WeChat Pay API v3 uses SHA256withRSA (PKCS#1 v1.5) for request and response signatures and
AEAD_AES_256_GCM under the merchant's APIv3 key for notification resources and certificates.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import string
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

__all__ = [
    "PlatformIdentity", "aes_gcm_open", "aes_gcm_seal", "load_public", "nonce", "sign", "verify",
]

NONCE_ALPHABET = string.ascii_letters + string.digits
CERT_VALIDITY_DAYS = 5 * 365


def nonce(length: int) -> str:
    return "".join(secrets.choice(NONCE_ALPHABET) for _ in range(length))


def sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def load_public(pem: str) -> rsa.RSAPublicKey:
    """A merchant's API key as registered: a certificate PEM or a public key PEM."""
    data = pem.encode()
    key = (x509.load_pem_x509_certificate(data).public_key() if b"CERTIFICATE" in data
           else serialization.load_pem_public_key(data))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA key")
    return key


def aes_gcm_seal(key: bytes, nonce_text: str, associated_data: str, plaintext: bytes) -> str:
    return base64.b64encode(AESGCM(key).encrypt(nonce_text.encode(), plaintext, associated_data.encode())).decode()


def aes_gcm_open(key: bytes, nonce_text: str, associated_data: str, ciphertext_b64: str) -> bytes | None:
    try:
        return AESGCM(key).decrypt(nonce_text.encode(), base64.b64decode(ciphertext_b64), associated_data.encode())
    except (InvalidTag, ValueError, binascii.Error):
        return None


class PlatformIdentity:
    """WeChat Pay's own signing key, published two ways: as a "WeChat Pay public key" with a
    `PUB_KEY_ID_…` id (merchants since 2024), and as a platform certificate whose upper-case hex
    serial names it (older merchants, fetched from `/v3/certificates`)."""

    def __init__(self, now: datetime, key: rsa.RSAPrivateKey | None = None):
        self.key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key_id = "PUB_KEY_ID_" + "".join(secrets.choice(string.digits) for _ in range(32))
        subject = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com (fake)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (fake)"),
        ])
        self.not_before = now - timedelta(days=1)
        self.not_after = now + timedelta(days=CERT_VALIDITY_DAYS)
        self.certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(self.not_before).not_valid_after(self.not_after)
            .sign(self.key, hashes.SHA256()))
        self.cert_serial = format(self.certificate.serial_number, "X")

    @property
    def public_key_pem(self) -> str:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @property
    def certificate_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()
