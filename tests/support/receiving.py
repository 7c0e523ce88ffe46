"""Putting a written delivery through the server's receiving path, as the HTTP API does."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from exchange_server.accounts.models import Account
from exchange_server.runtime import Runtime
from exchange_server.submissions.receiving import ReceivingService
from exchange_server.submissions.upload import ReceivedFile


def receive_folder(rt: Runtime, account_name: str, folder: Path) -> int:
    """Archive every file of a delivery folder and record it for ``account_name``; returns its id."""
    with rt.db.session() as s:
        account = s.scalar(select(Account).where(Account.name == account_name))
        assert account is not None, account_name
        files = []
        for p in sorted(folder.iterdir()):
            staged = rt.archive.stage()
            staged.write(p.read_bytes())
            files.append(ReceivedFile(p.name, staged.commit(), p.stat().st_size))
        delivery, _ = ReceivingService(s, rt.archive, rt.spec).receive(account, "http", files)
        return delivery.id
