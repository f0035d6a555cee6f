"""Ed25519 signatures over a report's artifactHash (digest §7.6.3).

"Ed25519 over a hash" means: hex-decode the 64-character hash to its 32 raw bytes and sign or verify
those bytes, never the hex text; the signature travels as standard base64 with padding. Private keys
are read from the machine running gates and are never written anywhere.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from conformance.errors import ConfigError
from conformance.inputlimits import read_bounded

ALGORITHM = "Ed25519"


def hash_bytes(artifact_hash: str) -> bytes:
    """The 32 raw bytes of a lowercase hex sha256."""
    if len(artifact_hash) != 64:
        raise ValueError(f"an artifactHash has 64 hex digits, got {len(artifact_hash)}")
    return bytes.fromhex(artifact_hash)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from a PEM file; anything else is a `ConfigError`."""
    data = read_bounded(path, source=str(path), what="the signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # the message of a failed load may quote the input: keep it out
        raise ConfigError(
            "not an unencrypted PEM private key (expected Ed25519, PKCS#8)", source=str(path)
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"the signing key is {type(key).__name__}, not Ed25519", source=str(path))
    return key


def sign(artifact_hash: str, key: Ed25519PrivateKey, key_id: str | None) -> dict[str, Any]:
    """The ``signature`` object: algorithm, the key id when one is given, and the base64 signature."""
    signature: dict[str, Any] = {"algorithm": ALGORITHM}
    if key_id:
        signature["keyId"] = key_id
    signature["signatureBase64"] = base64.b64encode(key.sign(hash_bytes(artifact_hash))).decode("ascii")
    return signature


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustedKey:
    """A public key trusted to sign reports, optionally bound to the keyId signatures name it by."""

    key: Ed25519PublicKey
    key_id: str | None
    source: str


def load_trusted_key(spec: str) -> TrustedKey:
    """``[KEY_ID=]PATH`` of an Ed25519 public key (SPKI PEM)."""
    key_id, sep, path = spec.partition("=")
    if not sep:
        key_id, path = "", spec
    source = f"<argument --public-key {spec}>"
    data = read_bounded(Path(path), source=path, what="the public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError("not a PEM public key (SPKI)", source=path) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"the public key is {type(key).__name__}, not Ed25519", source=source)
    return TrustedKey(key=key, key_id=key_id or None, source=path)


def verify(
    artifact_hash: str, signature: Mapping[str, Any], trusted: Sequence[TrustedKey]
) -> TrustedKey | None:
    """The trusted key whose signature this is, or None.

    When the signature names a keyId and some trusted key is bound to that id, only those keys are
    tried; unbound keys are tried in any case.
    """
    if signature.get("algorithm") != ALGORITHM:
        return None
    try:
        raw = base64.b64decode(str(signature.get("signatureBase64", "")), validate=True)
    except (binascii.Error, ValueError):
        return None
    key_id = signature.get("keyId")
    bound = [t for t in trusted if t.key_id is not None and t.key_id == key_id]
    candidates = bound or [t for t in trusted if t.key_id is None]
    message = hash_bytes(artifact_hash)
    for candidate in candidates:
        try:
            candidate.key.verify(raw, message)
        except InvalidSignature:
            continue
        return candidate
    return None
