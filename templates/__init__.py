"""jinja2 templates shared by the packages (the rendered standard; server pages later)."""
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent
