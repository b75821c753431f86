"""Cryptography every channel needs, written once: RSA keys in either PEM form, SHA256withRSA
signatures (Alipay RSA2, WeChat Pay v3, the sandbox), and AES-256-GCM (WeChat Pay notifications).

Verification functions answer a bool and never raise on a bad signature: a channel adapter turns
`False` into its own refusal. Key loading raises `KeyFormatError` with a message safe to show an
operator (it never contains key material).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KeyFormatError", "aes_gcm_decrypt", "aes_gcm_encrypt", "generate_private_pem", "load_private_key",
    "load_public_key", "public_pem_of", "rsa_sign", "rsa_verify", "strip_pem",
]

RSA_KEY_BITS_MIN = 2048


class KeyFormatError(ValueError):
    """A key that does not parse, or is not the kind asked for."""


def strip_pem(text: str) -> str:
    """Bare base64 of a PEM (what Alipay's console shows and SDKs accept), or the text unchanged."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    return "".join(ln for ln in lines if ln and not ln.startswith("-----"))


def _wrap(b64: str, label: str) -> bytes:
    body = "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()


def load_private_key(pem: str | bytes) -> rsa.RSAPrivateKey:
    """An RSA private key from PKCS#8 or PKCS#1 PEM, or from bare base64 of either."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    candidates = [text.encode()] if "-----BEGIN" in text else [
        _wrap(strip_pem(text), "PRIVATE KEY"), _wrap(strip_pem(text), "RSA PRIVATE KEY")]
    for data in candidates:
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, binascii.Error):
            continue
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyFormatError("not an RSA private key")
        if key.key_size < RSA_KEY_BITS_MIN:
            raise KeyFormatError(f"RSA key shorter than {RSA_KEY_BITS_MIN} bits")
        return key
    raise KeyFormatError("not a PEM RSA private key (PKCS#1 or PKCS#8)")


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """An RSA public key from SubjectPublicKeyInfo or PKCS#1 PEM, bare base64, or an X.509
    certificate PEM (WeChat Pay platform certificates)."""
    text = pem.decode() if isinstance(pem, bytes) else pem
    if "BEGIN CERTIFICATE" in text:
        from cryptography import x509

        try:
            key = x509.load_pem_x509_certificate(text.encode()).public_key()
        except ValueError as exc:
            raise KeyFormatError("not a PEM certificate") from exc
        if not isinstance(key, rsa.RSAPublicKey):
            raise KeyFormatError("certificate does not hold an RSA key")
        return key
    if "PRIVATE KEY" in text:
        raise KeyFormatError("a private key was given where a public key is expected")
    candidates = [text.encode()] if "-----BEGIN" in text else [
        _wrap(strip_pem(text), "PUBLIC KEY"), _wrap(strip_pem(text), "RSA PUBLIC KEY")]
    for data in candidates:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, binascii.Error):
            continue
        if not isinstance(key, rsa.RSAPublicKey):
            raise KeyFormatError("not an RSA public key")
        return key
    raise KeyFormatError("not a PEM RSA public key")


def generate_private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS_MIN)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem_of(private: rsa.RSAPrivateKey | str) -> str:
    key = load_private_key(private) if isinstance(private, str) else private
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def rsa_sign(key: rsa.RSAPrivateKey, message: bytes) -> str:
    """base64(SHA256withRSA PKCS#1 v1.5 signature)."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: bytes, signature_b64: str | None) -> bool:
    if not signature_b64:
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def aes_gcm_decrypt(key: bytes, nonce: str, associated_data: str, ciphertext_b64: str) -> bytes | None:
    """AES-256-GCM open; None when the tag, key or input is wrong (never raises on bad input)."""
    try:
        return AESGCM(key).decrypt(nonce.encode(), base64.b64decode(ciphertext_b64, validate=True),
                                   associated_data.encode() if associated_data else None)
    except (InvalidTag, ValueError, binascii.Error):
        return None


def aes_gcm_encrypt(key: bytes, nonce: str, associated_data: str, plaintext: bytes) -> str:
    return base64.b64encode(AESGCM(key).encrypt(nonce.encode(), plaintext,
                                                associated_data.encode() if associated_data else None)).decode()
