"""The province's slice of the national top-500 list over HTTP; downloads are acknowledgements."""
from __future__ import annotations

from typing import Any

from flask import Response, url_for
from flask_smorest import Blueprint

from ..accounts.models import PROVINCE
from ..clock import iso
from ..db import get_session
from ..errors import NotFound
from ..lists.services import ListService
from ..org.services import OrgService
from ..runtime.flask import runtime
from .auth import authenticate
from .schemas import ErrorSchema, ListSliceSchema

blp = Blueprint("lists", __name__, url_prefix="/api/v1/list",
                description="The province's part of the top-500 list / 本省500强名单")


def _province(party: str | None) -> str:
    province = OrgService(get_session()).province_of(party) if party else None
    if province is None:
        raise NotFound("this account has no province", "此账户没有所属省份", code="no_province")
    return province


@blp.route("")
@blp.doc(security=[{"bearer": []}])
@blp.response(200, ListSliceSchema)
@blp.alt_response(404, schema=ErrorSchema, description="No list published for this province yet.")
def current_slice() -> Any:
    """The current published list version's slice for the caller's province: what and where."""
    account = authenticate(PROVINCE)
    rt = runtime()
    service = ListService(get_session(), rt.archive, rt.spec)
    sl = service.slice_for(_province(account.party))
    version = sl.version
    files = [{"name": name, "sha256": sha, "size": size,
              "url": url_for("lists.slice_file", name=name)}
             for name, sha, size in ((sl.check_name, sl.check_sha256, len(rt.archive.read_bytes(sl.check_sha256))),
                                     (sl.data_name, sl.data_sha256, sl.data_size))]
    return {"version": version.version, "province": sl.province, "published_at": iso(version.published_at),
            "rows": sl.rows, "added": version.added, "changed": version.changed, "removed": version.removed,
            "files": files}


@blp.route("/files/<name>")
@blp.doc(security=[{"bearer": []}])
@blp.response(200, description="A file of the caller's slice; the download is recorded as an acknowledgement.")
@blp.alt_response(404, schema=ErrorSchema, description="Not a file of your province's current slice.")
def slice_file(name: str) -> Response:
    """Download a file of the current slice (check file or data file)."""
    account = authenticate(PROVINCE)
    rt = runtime()
    session = get_session()
    service = ListService(session, rt.archive, rt.spec)
    sl = service.slice_for(_province(account.party))
    digest = {sl.check_name: sl.check_sha256, sl.data_name: sl.data_sha256}.get(name)
    if digest is None:
        raise NotFound(f"{name} is not a file of your province's current list slice",
                       f"{name} 不是本省当前名单的文件", code="list_file_not_found")
    service.record_download(sl, account.id, name, "http")
    session.commit()
    return Response(rt.archive.read_bytes(digest), mimetype="application/octet-stream",
                    headers={"Content-Disposition": f"attachment; filename={name}"})
