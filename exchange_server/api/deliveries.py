"""Deliveries over HTTP: upload, status, report and feedback files."""
from __future__ import annotations

from typing import Any, Callable

from flask import Response, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from ..accounts.models import PROVINCE, Account
from ..db import get_session
from ..errors_http import DELIVERY_FAILED
from ..ingestion.models import IngestJob
from ..runtime.flask import runtime
from ..submissions.http_delivery import HttpReceiver
from ..submissions.models import FAILED, Delivery
from ..submissions.services import DeliveryService, delivery_dict, receipt_dict
from .auth import authenticate
from .schemas import DeliveryPageSchema, DeliveryQueryArgsSchema, DeliverySchema, ErrorSchema, ReceiptSchema

blp = Blueprint("deliveries", __name__, url_prefix="/api/v1/deliveries",
                description="Upload deliveries and follow their verdicts / 上传报送并查询结果")

UPLOAD_BODY = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}}},
    "description": "The check file and every data file it lists, as file parts (any field name); at least one."}}}}


#: A downloaded file's body, for the OpenAPI document.
FILE = {"type": "string", "format": "binary"}


def _base() -> str:
    return url_for("deliveries.DeliveryCollection", _external=False).rstrip("/").rsplit("/deliveries", 1)[0]


def _delivery_json(service: DeliveryService, account: Account, delivery: Delivery) -> dict[str, Any]:
    """A delivery as the API returns it to ``account``: a failure is a stable code and bilingual message.

    What the server recorded as the cause (possibly an internal error's text) is for HQ's
    accounts only; a province never sees it.
    """
    body = delivery_dict(service, delivery, _base())
    failed = delivery.status == FAILED
    code, message, message_zh = DELIVERY_FAILED
    detail = None
    if failed and account.role != PROVINCE:
        # The cause as the worker met it (the job keeps the error; the delivery a stable message).
        job = service.session.scalar(select(IngestJob).where(IngestJob.delivery_id == delivery.id))
        detail = (job.last_error if job is not None and job.last_error else None) or delivery.failure
    body.update(failure=message if failed else None, failure_zh=message_zh if failed else None,
                failure_code=code if failed else None, failure_detail=detail)
    return body


@blp.route("")
class DeliveryCollection(MethodView):
    """The caller's deliveries."""

    @blp.doc(requestBody=UPLOAD_BODY, security=[{"bearer": []}])
    @blp.response(202, ReceiptSchema, description="Received and queued for validation; the receipt.")
    @blp.alt_response(200, schema=ReceiptSchema, description="These exact bytes were received before: that receipt.")
    @blp.alt_response(400, schema=ErrorSchema, description="Malformed upload (not multipart, bad file name, cut short).")
    @blp.alt_response(401, schema=ErrorSchema, description="No valid token.")
    @blp.alt_response(403, schema=ErrorSchema, description="Not a province's token (code wrong_role).")
    @blp.alt_response(413, schema=ErrorSchema, description="A file or the request is over its cap.")
    def post(self) -> Any:
        """Upload a delivery: the check file and its data files in one multipart request."""
        account = authenticate(PROVINCE)
        rt = runtime()
        session = get_session()
        delivery, duplicate = HttpReceiver(session, rt.archive, rt.spec, rt.settings).receive(
            account, "http", request.stream, request.content_type, request.content_length)
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
        return {"items": [_delivery_json(service, account, d) for d in items], "total": total, "page": args["page"],
                "per_page": args["per_page"]}


@blp.route("/<id:delivery_id>")
class DeliveryItem(MethodView):
    """One delivery."""

    @blp.doc(security=[{"bearer": []}])
    @blp.response(200, DeliverySchema)
    @blp.alt_response(404, schema=ErrorSchema, description="No such delivery, or not yours.")
    def get(self, delivery_id: int) -> Any:
        """Status, verdict, counts per error code and the versions it produced."""
        account = authenticate()
        service = DeliveryService(get_session(), runtime().archive)
        return _delivery_json(service, account, service.get(account, delivery_id))


def _file_errors(f: Callable[..., Any]) -> Callable[..., Any]:
    """The error answers every file of a delivery shares, for the OpenAPI document."""
    f = blp.alt_response(401, schema=ErrorSchema, description="No valid token.")(f)
    f = blp.alt_response(404, schema=ErrorSchema, description="No such delivery, or not yours "
                                                              "(delivery_not_found); no such file for it "
                                                              "(feedback_not_available).")(f)
    f = blp.alt_response(409, schema=ErrorSchema, description="Validation has not ended yet (report_not_ready).")(f)
    return blp.doc(security=[{"bearer": []}])(f)


@blp.route("/<id:delivery_id>/report")
@blp.response(200, {"type": "object"}, content_type="application/json",
              description="The full validation report (JSON): every finding with file, line, field, value.")
@_file_errors
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


@blp.route("/<id:delivery_id>/receipt.xml")
@blp.response(200, FILE, content_type="application/xml",
              description="The receipt file (.rct.xml) of CONVENTIONS §9.")
@_file_errors
def delivery_receipt_xml(delivery_id: int) -> Response:
    """The receipt as the standard's XML file."""
    return _feedback(delivery_id, "receipt")


@blp.route("/<id:delivery_id>/feedback.fbf.xml")
@blp.response(200, FILE, content_type="application/xml",
              description="File-level feedback (.fbf.xml).")
@_file_errors
def delivery_file_feedback(delivery_id: int) -> Response:
    """File-level feedback: status, files, counts per code."""
    return _feedback(delivery_id, "file")


@blp.route("/<id:delivery_id>/feedback.fbr.xml")
@blp.response(200, FILE, content_type="application/xml",
              description="Record-level feedback (.fbr.xml); 404 when nothing was found.")
@_file_errors
def delivery_record_feedback(delivery_id: int) -> Response:
    """Record-level feedback: every listed finding."""
    return _feedback(delivery_id, "record")
