"""RSA-SHA256 signatures as the sandbox and its adapter use them."""

from __future__ import annotations

from piaohao.channels.sandbox import rsa


def test_signature_round_trip_and_tamper_detection(platform_keys):
    private_pem, public_pem = platform_keys
    signature = rsa.sign(private_pem, b"hello")
    assert rsa.verify(public_pem, b"hello", signature)
    assert not rsa.verify(public_pem, b"hellO", signature)
    assert not rsa.verify(public_pem, b"hello", "not base64!")
    assert not rsa.verify(public_pem, b"hello", None)
    assert not rsa.verify("not a key", b"hello", signature)


def test_public_pem_is_derived_from_the_private_key(platform_keys):
    private_pem, public_pem = platform_keys
    assert rsa.public_pem_of(private_pem) == public_pem
    assert rsa.load_public(public_pem).key_size == rsa.KEY_BITS
