"""AES-256-GCM for the raw rows the state store keeps (failed records, waiting children).

Off unless a key is configured, by environment variable:

- ``SYNCFLOW_PAYLOAD_KEYS=k2:<base64 32 bytes>,k1:<base64 32 bytes>``: a keyring; the first
  key encrypts, every key decrypts (rotation: put the new key first, keep the old ones until no
  payload uses them);
- or ``SYNCFLOW_PAYLOAD_KEY=<base64 32 bytes>`` with ``SYNCFLOW_PAYLOAD_KEY_ID`` (default
  ``k1``) for a single key.

A payload is stored as ``base64(nonce || ciphertext+tag)`` with the key id beside it (its own
column); the nonce is 12 random bytes per payload. The associated data binds a payload to its
table and entity, so a payload copied elsewhere does not decrypt. A payload without a key id is
plain text (written before a key was configured) and is read as it is.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from syncflow_core.errors import ConfigError, PayloadKeyError

__all__ = ["KEYRING_ENV", "KEY_ENV", "KEY_ID_ENV", "PayloadCipher", "open_payload"]

KEYRING_ENV = "SYNCFLOW_PAYLOAD_KEYS"
KEY_ENV = "SYNCFLOW_PAYLOAD_KEY"
KEY_ID_ENV = "SYNCFLOW_PAYLOAD_KEY_ID"
_NONCE = 12


def _key(text: str, name: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{name}: not base64 (expected 32 random bytes, base64)") from None
    if len(raw) != 32:
        raise ConfigError(f"{name}: {len(raw)} bytes; AES-256 needs 32 (base64 of 32 bytes)")
    return raw


class PayloadCipher:
    """Encrypts with the active key, decrypts with any key of the ring."""

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        if active not in keys:
            raise ConfigError(f"payload key id {active!r} is not in the keyring")
        self._keys = {k: AESGCM(v) for k, v in keys.items()}
        self.active = active

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PayloadCipher | None:
        """The cipher the environment configures, or None (payloads stay plain text)."""
        env = os.environ if env is None else env
        ring = env.get(KEYRING_ENV, "").strip()
        if ring:
            keys: dict[str, bytes] = {}
            order: list[str] = []
            for i, item in enumerate(p for p in ring.split(",") if p.strip()):
                key_id, sep, value = item.strip().partition(":")
                if not sep or not key_id:
                    raise ConfigError(f"{KEYRING_ENV}: entry {i + 1} is not 'id:base64key'")
                keys[key_id] = _key(value, f"{KEYRING_ENV}: key {key_id!r}")
                order.append(key_id)
            return cls(keys, order[0])
        single = env.get(KEY_ENV, "").strip()
        if single:
            key_id = env.get(KEY_ID_ENV, "").strip() or "k1"
            return cls({key_id: _key(single, KEY_ENV)}, key_id)
        return None

    def encrypt(self, text: str, context: str) -> str:
        """``text`` sealed with the active key; ``context`` (table/entity) is authenticated."""
        nonce = os.urandom(_NONCE)
        sealed = self._keys[self.active].encrypt(nonce, text.encode("utf-8"), context.encode())
        return base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, payload: str, key_id: str, context: str) -> str:
        """The plain text of a payload sealed under ``key_id`` for ``context``."""
        aead = self._keys.get(key_id)
        if aead is None:
            raise PayloadKeyError(
                f"payload encrypted with key {key_id!r}, which is not configured "
                f"(add it to {KEYRING_ENV})"
            )
        try:
            raw = base64.b64decode(payload)
            plain = aead.decrypt(raw[:_NONCE], raw[_NONCE:], context.encode())
        except (InvalidTag, binascii.Error, ValueError):
            raise PayloadKeyError(
                f"payload key {key_id!r} does not decrypt this payload: wrong key for that id, "
                "or the payload was altered"
            ) from None
        return plain.decode("utf-8")


def open_payload(
    cipher: PayloadCipher | None, payload: str, key_id: str | None, context: str
) -> str:
    """A stored payload as plain text (``key_id`` None: it was stored plain)."""
    if key_id is None:
        return payload
    if cipher is None:
        raise PayloadKeyError(
            f"payload encrypted with key {key_id!r}, but no payload key is configured "
            f"(set {KEYRING_ENV} or {KEY_ENV})"
        )
    return cipher.decrypt(payload, key_id, context)
