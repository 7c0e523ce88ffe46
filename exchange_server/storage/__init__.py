"""Where every received and issued file is kept: an immutable, content-addressed archive."""
from .archive import Archive, LocalArchive, StagedObject, open_archive

__all__ = ["Archive", "LocalArchive", "StagedObject", "open_archive"]
