"""The interface standard as data; this module only tells where the files are."""
from pathlib import Path

SPEC_DIR = Path(__file__).resolve().parent
