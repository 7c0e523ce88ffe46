"""The embedded SFTP server's host key: created once, kept in ``<data dir>/keys``."""
from __future__ import annotations

import os

import paramiko

from ..config import Settings


def host_key_path(settings: Settings) -> os.PathLike[str]:
    """Where the host key lives."""
    return settings.data_path / "keys" / "ssh_host_ed25519_key"


def load_or_create_host_key(settings: Settings) -> paramiko.PKey:
    """The host key, generated on first use (Ed25519, mode 600, public half beside it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = settings.data_path / "keys" / "ssh_host_ed25519_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        (path.parent / "ssh_host_ed25519_key.pub").write_bytes(pub + b"\n")
    return paramiko.Ed25519Key(filename=str(path))


def host_key_line(settings: Settings) -> str:
    """``ssh-ed25519 AAAA...``: what provinces put in their known_hosts."""
    key = load_or_create_host_key(settings)
    return f"{key.get_name()} {key.get_base64()}"
