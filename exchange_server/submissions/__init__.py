"""Deliveries: receiving, archiving, receipts, reports and versions of accepted data."""
