"""The admin console's own records: cycle exceptions, proposed code-list versions, sign-in attempts.

The console's pages live in :mod:`exchange_server.pages.admin`; the services here hold the
rules (what may be granted, proposed or refused) and write every change to the audit log in
the caller's transaction.
"""
