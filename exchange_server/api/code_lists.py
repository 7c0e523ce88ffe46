"""The code-list versions HQ has published since the standard's release, for agents to validate with."""
from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from ..code_lists.services import code_lists_document
from ..db import get_session
from ..runtime.flask import runtime
from .auth import authenticate
from .schemas import CodeListsSchema

blp = Blueprint("code_lists", __name__, url_prefix="/api/v1/code-lists",
                description="Code-list versions published at HQ / 总部发布的代码表版本")


@blp.route("")
@blp.doc(security=[{"bearer": []}])
@blp.response(200, CodeListsSchema)
def published() -> Any:
    """Every published version beyond the YAML, oldest first: lay them over the standard with ``schemas.with_code_versions``."""
    authenticate()
    return code_lists_document(get_session(), runtime().spec)
