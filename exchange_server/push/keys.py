"""HQ's own SSH key for pushing to provinces' SFTP servers.

One Ed25519 key per exchange instance, kept at ``<data dir>/keys/hq_push_ed25519`` (mode
600) and created on first use. Provinces put its public line (``hq_public_key_line``) in
the ``authorized_keys`` of the account HQ pushes to.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import struct
from pathlib import Path

import paramiko
from paramiko.pkey import UnknownKeyType
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from ..config import Settings
from ..sftp.keys import load_or_create_key

log = logging.getLogger(__name__)

KEY_COMMENT = "kam-exchange-hq-push"


def hq_push_key_path(settings: Settings) -> Path:
    """Where HQ's push key lives: ``<data dir>/keys/hq_push_ed25519``."""
    return settings.data_path / "keys" / "hq_push_ed25519"


def load_or_create_hq_key(settings: Settings) -> paramiko.PKey:
    """HQ's push key, created (Ed25519, mode 600) the first time it is needed."""
    return load_or_create_key(hq_push_key_path(settings))


def hq_public_key_line(settings: Settings) -> str:
    """HQ's public key as an ``authorized_keys`` line (``ssh-ed25519 AAAA... comment``)."""
    key = load_or_create_hq_key(settings)
    return f"{key.get_name()} {key.get_base64()} {KEY_COMMENT}"


# -- provinces' host keys ------------------------------------------------------------------

class HostKeyError(ValueError):
    """A host key line that cannot be used (unknown type, bad base64, key does not parse)."""


def _is_key_type(token: str) -> bool:
    """Whether ``token`` looks like an SSH key algorithm name (``ssh-ed25519``, ``ecdsa-sha2-...``)."""
    return token.startswith(("ssh-", "ecdsa-", "sk-")) and " " not in token


def parse_host_key(line: str) -> tuple[str, str]:
    """``(type, base64)`` from ``"type base64 [comment]"`` or a known_hosts line ``"host type base64"``."""
    tokens = line.strip().split()
    if tokens and tokens[0].startswith("@"):
        # @cert-authority / @revoked change what the line means; we pin one plain key only.
        raise HostKeyError(f"known_hosts markers are not supported: {tokens[0]}")
    if len(tokens) >= 2 and _is_key_type(tokens[0]):
        key_type, blob = tokens[0], tokens[1]
    elif len(tokens) >= 3 and _is_key_type(tokens[1]):
        key_type, blob = tokens[1], tokens[2]
    else:
        raise HostKeyError("expected 'type base64' (as in a .pub file) or a known_hosts line 'host type base64'")
    host_key_from_parts(key_type, blob)  # raises if it is not a usable key
    return key_type, blob


def host_key_from_parts(key_type: str, blob: str) -> paramiko.PKey:
    """The public key ``type base64`` stands for, checked (type known, base64 valid, type matches)."""
    try:
        raw = base64.b64decode(blob.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise HostKeyError(f"host key is not valid base64: {exc}") from exc
    try:
        key = paramiko.PKey.from_type_string(key_type, raw)
    except UnknownKeyType as exc:
        raise HostKeyError(f"unsupported host key type {key_type!r}") from exc
    except (paramiko.SSHException, ValueError, TypeError, IndexError, struct.error) as exc:
        raise HostKeyError(f"host key does not parse as {key_type}: {exc}") from exc
    # paramiko takes a truncated key at face value; cryptography checks the key material
    # itself (curve point, length), so a damaged paste fails here rather than at push time.
    try:
        load_ssh_public_key(f"{key_type} {blob}".encode("ascii"))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise HostKeyError(f"host key is not a valid {key_type} key: {exc}") from exc
    return key


def host_key_from_line(line: str) -> paramiko.PKey:
    """The public key of a stored ``"type base64"`` line."""
    return host_key_from_parts(*parse_host_key(line))


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a key (``SHA256:...``, as ``ssh-keygen -lf`` prints it)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")
