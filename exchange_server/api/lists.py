"""The province's slices of the national top-500 list over HTTP; downloads are acknowledgements.

``GET /api/v1/list`` is the slice of the version in force; ``GET /api/v1/list/versions`` every
published or superseded version's slice, because a cycle delivered late is checked against
the versions in force during its period (``schemas.lists``), not only the newest.
"""
from __future__ import annotations

from typing import Any

from flask import Response, url_for
from flask_smorest import Blueprint

from ..accounts.models import PROVINCE
from ..clock import iso
from ..db import get_session
from ..errors import NotFound
from ..lists.models import PUBLISHED, SUPERSEDED, ListSlice
from ..lists.services import ListService
from ..org.services import OrgService
from ..runtime.flask import runtime
from .auth import authenticate
from .schemas import ErrorSchema, ListSliceSchema, ListVersionSliceSchema

blp = Blueprint("lists", __name__, url_prefix="/api/v1/list",
                description="The province's part of the top-500 list / 本省500强名单")


def _province(party: str | None) -> str:
    """Whose slices the account gets: its province's, or its own network's part where one is cut (a hub)."""
    session = get_session()
    province = OrgService(session).province_of(party) if party else None
    if province is None:
        raise NotFound("this account has no province", "此账户没有所属省份", code="no_province")
    rt = runtime()
    if party != province and ListService(session, rt.archive, rt.spec).serves_network_part(str(party)):
        return str(party)
    return province


def _files(sl: ListSlice) -> list[dict[str, Any]]:
    """A slice's check file and data file as the API lists them: name, digest, size, where to fetch it."""
    archive = runtime().archive
    return [{"name": name, "sha256": sha, "size": size, "url": url_for("lists.slice_file", name=name)}
            for name, sha, size in ((sl.check_name, sl.check_sha256, len(archive.read_bytes(sl.check_sha256))),
                                    (sl.data_name, sl.data_sha256, sl.data_size))]


def _slices(service: ListService, province: str) -> list[ListSlice]:
    """The province's slice of every published or superseded version, oldest version first."""
    out = []
    for version in reversed(service.versions()):  # newest first; versions order by name
        if version.state in (PUBLISHED, SUPERSEDED):
            out += [sl for sl in version.slices if sl.province == province]
    return out


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
    return {"version": version.version, "province": sl.province, "published_at": iso(version.published_at),
            "rows": sl.rows, "added": version.added, "changed": version.changed, "removed": version.removed,
            "files": _files(sl)}


@blp.route("/versions")
@blp.doc(security=[{"bearer": []}])
@blp.response(200, ListVersionSliceSchema(many=True))
@blp.alt_response(404, schema=ErrorSchema, description="The account has no province.")
def version_slices() -> Any:
    """Every published or superseded version's slice for the caller's province, oldest first (empty when none)."""
    account = authenticate(PROVINCE)
    rt = runtime()
    service = ListService(get_session(), rt.archive, rt.spec)
    return [{"version": sl.version.version, "state": sl.version.state, "published_at": iso(sl.version.published_at),
             "rows": sl.rows, "files": _files(sl)}
            for sl in _slices(service, _province(account.party))]


@blp.route("/files/<name>")
@blp.doc(security=[{"bearer": []}])
@blp.response(200, {"type": "string", "format": "binary"}, content_type="application/octet-stream",
              description="A file of the caller's slice; the download is recorded as an acknowledgement.")
@blp.alt_response(404, schema=ErrorSchema,
                  description="Not a file of your province's slice of a published or superseded version.")
def slice_file(name: str) -> Response:
    """Download a file (check file or data file) of any published or superseded version's slice."""
    account = authenticate(PROVINCE)
    rt = runtime()
    session = get_session()
    service = ListService(session, rt.archive, rt.spec)
    found = [(sl, digest) for sl in _slices(service, _province(account.party))
             for file, digest in ((sl.check_name, sl.check_sha256), (sl.data_name, sl.data_sha256)) if file == name]
    if not found:
        raise NotFound(f"{name} is not a file of your province's list slices",
                       f"{name} 不是本省名单切片的文件", code="list_file_not_found")
    sl, digest = found[-1]
    service.record_download(sl, account.id, name, "http")
    session.commit()
    return Response(rt.archive.read_bytes(digest), mimetype="application/octet-stream",
                    headers={"Content-Disposition": f"attachment; filename={name}"})
