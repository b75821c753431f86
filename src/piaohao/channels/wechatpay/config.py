"""A merchant's WeChat Pay account, as an operator enters it, with its keys parsed once."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import rsa

from piaohao.channels.spi.crypto import KeyFormatError, load_private_key, load_public_key

__all__ = ["PRODUCTION_BASE_URL", "WechatPayConfig"]

PRODUCTION_BASE_URL = "https://api.mch.weixin.qq.com"
APIV3_KEY_BYTES = 32


@dataclass(frozen=True)
class WechatPayConfig:
    """`serial_no` is the merchant API certificate's serial (hex); `private_key_pem` its key
    (`apiclient_key.pem`, PKCS#8 or PKCS#1). `platform_public_key_pem` is the WeChat Pay public key
    (or a platform certificate PEM) that `platform_serial` names (`PUB_KEY_ID_…` or the certificate
    serial). `previous_platform_keys` holds (serial, PEM) pairs still accepted during a rotation.
    Raises `KeyFormatError` (from spi.crypto) or `ValueError` on a bad key or APIv3 key."""

    mchid: str
    appid: str
    serial_no: str
    private_key_pem: str = field(repr=False)
    apiv3_key: str = field(repr=False)
    platform_public_key_pem: str = field(repr=False)
    platform_serial: str
    base_url: str = PRODUCTION_BASE_URL
    previous_platform_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    private_key: rsa.RSAPrivateKey = field(init=False, repr=False, compare=False)
    platform_keys: dict[str, rsa.RSAPublicKey] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.mchid and self.appid and self.serial_no and self.platform_serial):
            raise ValueError("mchid, appid, serial_no and platform_serial are required")
        if len(self.apiv3_key.encode()) != APIV3_KEY_BYTES or not self.apiv3_key.isascii():
            raise ValueError("the APIv3 key is 32 ASCII characters")
        object.__setattr__(self, "serial_no", self.serial_no.upper())
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        object.__setattr__(self, "private_key", load_private_key(self.private_key_pem))
        keys = {self.platform_serial: load_public_key(self.platform_public_key_pem)}
        for serial, pem in self.previous_platform_keys:
            keys.setdefault(serial, load_public_key(pem))
        object.__setattr__(self, "platform_keys", keys)
        pub = self.private_key.public_key().public_numbers()
        if any(k.public_numbers() == pub for k in keys.values()):
            raise KeyFormatError("the platform public key is the merchant's own key")
