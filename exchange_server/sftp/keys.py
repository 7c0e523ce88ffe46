"""SSH keys of the exchange: new Ed25519 pairs, and the embedded SFTP server's host key."""
from __future__ import annotations

from pathlib import Path

import paramiko

from ..config import Settings
from ..private_files import create_private


def new_ed25519() -> tuple[bytes, str]:
    """A new Ed25519 key pair: (OpenSSH private key bytes, ``ssh-ed25519 AAAA...`` public line)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode("ascii")


def load_or_create_key(path: Path) -> paramiko.PKey:
    """The Ed25519 key at ``path``, created (mode 600, in a mode-700 folder) the first time it is needed."""
    if not path.exists():
        private, _public = new_ed25519()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        create_private(path, private)  # two processes starting at once end up with one key
    return paramiko.Ed25519Key(filename=str(path))


def host_key_path(settings: Settings) -> Path:
    """Where the host key lives."""
    return settings.data_path / "keys" / "ssh_host_ed25519_key"


def load_or_create_host_key(settings: Settings) -> paramiko.PKey:
    """The host key, generated on first use (Ed25519, mode 600, public half beside it)."""
    path = host_key_path(settings)
    key = load_or_create_key(path)
    pub = path.parent / "ssh_host_ed25519_key.pub"
    if not pub.exists():
        pub.write_text(f"{key.get_name()} {key.get_base64()}\n")
    return key


def host_key_line(settings: Settings) -> str:
    """``ssh-ed25519 AAAA...``: what provinces put in their known_hosts."""
    key = load_or_create_host_key(settings)
    return f"{key.get_name()} {key.get_base64()}"
