"""The media types of the server's downloads, named once for the pages, the API and the services that build files."""
from __future__ import annotations

# One charset parameter: responses send it as it is (pages.files.attachment), never adding another.
CSV_TYPE = "text/csv; charset=utf-8"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
