"""Deliveries over HTTP: upload, status, report and feedback files."""
from __future__ import annotations

from typing import Any

from flask import Response, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from ..accounts.models import PROVINCE
from ..db import get_session
from ..runtime.flask import runtime
from ..submissions.receiving import ReceivingService
from ..submissions.services import DeliveryService, delivery_dict, receipt_dict
from ..submissions.upload import receive_multipart
from .auth import authenticate
from .schemas import DeliveryPageSchema, DeliveryQueryArgsSchema, DeliverySchema, ErrorSchema, ReceiptSchema

blp = Blueprint("deliveries", __name__, url_prefix="/api/v1/deliveries",
                description="Upload deliveries and follow their verdicts / 上传报送并查询结果")

UPLOAD_BODY = {"content": {"multipart/form-data": {"schema": {
    "type": "object", "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
    "description": "The check file and every data file it lists, as file parts (any field name)."}}}}


def _base() -> str:
    return url_for("deliveries.DeliveryCollection", _external=False).rstrip("/").rsplit("/deliveries", 1)[0]


@blp.route("")
class DeliveryCollection(MethodView):
    """The caller's deliveries."""

    @blp.doc(requestBody=UPLOAD_BODY, security=[{"bearer": []}])
    @blp.response(202, ReceiptSchema, description="Received and queued for validation; the receipt.")
    @blp.alt_response(200, schema=ReceiptSchema, description="These exact bytes were received before: that receipt.")
    @blp.alt_response(400, schema=ErrorSchema, description="Malformed upload (not multipart, bad file name, cut short).")
    @blp.alt_response(401, schema=ErrorSchema, description="No valid token.")
    @blp.alt_response(413, schema=ErrorSchema, description="A file or the request is over its cap.")
    def post(self) -> Any:
        """Upload a delivery: the check file and its data files in one multipart request."""
        account = authenticate(PROVINCE)
        rt = runtime()
        files = receive_multipart(request.stream, request.content_type, request.content_length, rt.archive,
                                  rt.settings)
        session = get_session()
        delivery, duplicate = ReceivingService(session, rt.archive, rt.spec).receive(account, "http", files)
        session.commit()
        body = receipt_dict(delivery, duplicate, _base())
        return body, 200 if duplicate else 202

    @blp.doc(security=[{"bearer": []}])
    @blp.arguments(DeliveryQueryArgsSchema, location="query")
    @blp.response(200, DeliveryPageSchema)
    def get(self, args: dict[str, Any]) -> Any:
        """List the deliveries the caller may see, newest first."""
        account = authenticate()
        service = DeliveryService(get_session(), runtime().archive)
        items, total = service.page(account, args.get("cycle"), args.get("status"), args.get("mode"), args["page"],
                                    args["per_page"])
        base = _base()
        return {"items": [delivery_dict(service, d, base) for d in items], "total": total, "page": args["page"],
                "per_page": args["per_page"]}


@blp.route("/<int:delivery_id>")
class DeliveryItem(MethodView):
    """One delivery."""

    @blp.doc(security=[{"bearer": []}])
    @blp.response(200, DeliverySchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such delivery, or not yours.")
    def get(self, delivery_id: int) -> Any:
        """Status, verdict, counts per error code and the versions it produced."""
        account = authenticate()
        service = DeliveryService(get_session(), runtime().archive)
        return delivery_dict(service, service.get(account, delivery_id), _base())


@blp.route("/<int:delivery_id>/report")
@blp.doc(security=[{"bearer": []}])
@blp.response(200, description="The full validation report (JSON): every finding with file, line, field, value.")
@blp.alt_response(409, schema=ErrorSchema, description="Validation has not ended yet.")
def delivery_report(delivery_id: int) -> Response:
    """The full validation report."""
    account = authenticate()
    service = DeliveryService(get_session(), runtime().archive)
    data = service.report_bytes(service.get(account, delivery_id))
    return Response(data, mimetype="application/json")


def _feedback(delivery_id: int, kind: str) -> Response:
    account = authenticate()
    service = DeliveryService(get_session(), runtime().archive)
    name, data = service.feedback(service.get(account, delivery_id), kind)
    return Response(data, mimetype="application/xml", headers={"Content-Disposition": f"attachment; filename={name}"})


@blp.route("/<int:delivery_id>/receipt.xml")
@blp.doc(security=[{"bearer": []}])
@blp.response(200, description="The receipt file (.rct.xml) of CONVENTIONS §9.")
def delivery_receipt_xml(delivery_id: int) -> Response:
    """The receipt as the standard's XML file."""
    return _feedback(delivery_id, "receipt")


@blp.route("/<int:delivery_id>/feedback.fbf.xml")
@blp.doc(security=[{"bearer": []}])
@blp.response(200, description="File-level feedback (.fbf.xml).")
def delivery_file_feedback(delivery_id: int) -> Response:
    """File-level feedback: status, files, counts per code."""
    return _feedback(delivery_id, "file")


@blp.route("/<int:delivery_id>/feedback.fbr.xml")
@blp.doc(security=[{"bearer": []}])
@blp.response(200, description="Record-level feedback (.fbr.xml); 404 when nothing was found.")
def delivery_record_feedback(delivery_id: int) -> Response:
    """Record-level feedback: every listed finding."""
    return _feedback(delivery_id, "record")
