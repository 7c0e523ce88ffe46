"""Running the server: what a command or process needs (settings, database, archive, spec)."""
from .services import Runtime, open_runtime

__all__ = ["Runtime", "open_runtime"]
