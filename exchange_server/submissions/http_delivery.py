"""Receiving a delivery sent as one multipart HTTP request: the API's upload and the province page's.

Both callers hand over the request body as it streams in; it is archived by the one
multipart parser (:func:`.upload.receive_multipart`) and recorded by the one
:class:`.receiving.ReceivingService` — the same caps, names, receipt and queue job whichever
door it came through. Only the channel differs (``http`` for the API, ``web`` for the page).
"""
from __future__ import annotations

from typing import IO, Callable, Sequence

from sqlalchemy.orm import Session

from schemas import Spec

from ..accounts.models import Account
from ..config import Settings
from ..storage import Archive
from .models import Delivery
from .receiving import ReceivingService
from .upload import ReceivedFile, receive_multipart

#: Looks at the archived files before anything is recorded; raises an ExchangeError to refuse them.
Screen = Callable[[Account, Sequence[ReceivedFile]], None]


class HttpReceiver:
    """Archives a multipart body and records it as the account's delivery (with its receipt and queue job)."""

    def __init__(self, session: Session, archive: Archive, spec: Spec, settings: Settings) -> None:
        self.session = session
        self.archive = archive
        self.spec = spec
        self.settings = settings

    def receive(self, account: Account, channel: str, stream: IO[bytes], content_type: str | None,
                content_length: int | None, screen: Screen | None = None) -> tuple[Delivery, bool]:
        """Archive the body's files and record them; returns (delivery, is_duplicate). The caller commits.

        ``screen`` (the page's, not the API's) may refuse the files after they are archived and
        before a delivery is recorded: the archive is content-addressed, so bytes no delivery
        refers to cost nothing but their space and are shared if they arrive again.
        """
        files = receive_multipart(stream, content_type, content_length, self.archive, self.settings)
        if screen is not None:
            screen(account, files)
        return ReceivingService(self.session, self.archive, self.spec).receive(account, channel, files)
