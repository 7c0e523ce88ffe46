"""The HQ side of the exchange: HTTP and SFTP channels, ingestion, consolidation, pages."""
