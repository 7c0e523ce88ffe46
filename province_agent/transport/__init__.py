"""How the agent talks to HQ: one interface, HTTP and SFTP implementations."""
from .http import CertificateError, HttpError, HttpTransport, multipart_body

__all__ = ["CertificateError", "HttpError", "HttpTransport", "multipart_body"]
