"""The SFTP channel: the embedded server, drop-box inboxes, and outboxes for what HQ returns."""
