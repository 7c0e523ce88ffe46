"""Validate deliveries against the standard: streaming, exact, tiered (CONVENTIONS.md §9)."""
from .engine import (
    DEFAULT_MAX_FILE_SIZE, ValidationContext, ValidationOptions, group_deliveries, validate_delivery, validate_paths,
)
from .feedback import file_feedback_xml, receipt_xml, record_feedback_xml, render_text, report_json
from .report import ACCEPTED, ACCEPTED_WITH_WARNINGS, REJECTED, FileSummary, Finding, Report, worst_status

__all__ = [
    "ACCEPTED", "ACCEPTED_WITH_WARNINGS", "DEFAULT_MAX_FILE_SIZE", "REJECTED", "FileSummary", "Finding", "Report",
    "ValidationContext", "ValidationOptions", "file_feedback_xml", "group_deliveries", "receipt_xml",
    "record_feedback_xml", "render_text", "report_json", "validate_delivery", "validate_paths", "worst_status",
]
