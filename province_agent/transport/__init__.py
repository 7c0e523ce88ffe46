"""How the agent talks to HQ: one interface, HTTP and SFTP implementations."""
from .http import HttpError, HttpTransport, multipart_body

__all__ = ["HttpError", "HttpTransport", "multipart_body"]
