"""The runtime of the current Flask app."""
from __future__ import annotations

from flask import Flask, current_app

from .services import Runtime


def runtime(app: Flask | None = None) -> Runtime:
    """The Runtime the app was built with."""
    rt: Runtime = (app or current_app).extensions["kam_runtime"]
    return rt
