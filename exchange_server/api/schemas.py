"""What the API carries, as marshmallow schemas (they also generate the OpenAPI document)."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..routing import MAX_PAGE

#: A cycle id (schemas.conventions.CYCLE_RE without its group names, which OpenAPI's regex dialect lacks).
CYCLE_PATTERN = r"^[0-9]{4}(0[1-9]|1[0-2]|Q[1-4]|H[12])?\Z"  # \Z: "$" would let "202610\n" through


class ErrorSchema(Schema):
    """The one shape of every error."""

    code = fields.String(required=True, metadata={"description": "stable error code, e.g. delivery_not_found"})
    status = fields.Integer(required=True)
    message = fields.String(required=True)
    message_zh = fields.String(required=True)
    errors = fields.Raw()


class FileSchema(Schema):
    """A file of a delivery as received."""

    name = fields.String()
    size = fields.Integer()
    sha256 = fields.String()
    unit = fields.String(allow_none=True)
    rows = fields.Integer(allow_none=True)


class LinksSchema(Schema):
    """Where to find more about a delivery."""

    self = fields.String()
    report = fields.String()
    receipt_xml = fields.String()
    file_feedback_xml = fields.String()
    record_feedback_xml = fields.String()


class ReceiptSchema(Schema):
    """Issued the moment a delivery is received."""

    delivery_id = fields.Integer(required=True)
    check_file = fields.String(allow_none=True)
    received_at = fields.String(metadata={"description": "ISO 8601, UTC"})
    received_at_beijing = fields.String(metadata={"description": "YYYYMMDDHHMMSS, Beijing time"})
    fingerprint = fields.String(metadata={"description": "SHA-256 over the names and digests of all files"})
    duplicate = fields.Boolean(metadata={"description": "true when these exact bytes were received before"})
    status = fields.String()
    files = fields.List(fields.Nested(FileSchema))
    links = fields.Nested(LinksSchema)


class CodeCountSchema(Schema):
    """How often one error code was found."""

    code = fields.String()
    severity = fields.String()
    count = fields.Integer()


class VersionSchema(Schema):
    """An accepted version of one unit of a party's cycle."""

    unit = fields.String()
    number = fields.Integer()
    current = fields.Boolean()
    accepted_at = fields.String()


class ReviewCommentSchema(Schema):
    """A comment from HQ's review to the sender of a delivery."""

    author = fields.String()
    body = fields.String()
    created_at = fields.String()
    delivered_at = fields.String(allow_none=True)


class HqFindingSchema(Schema):
    """One of HQ's findings on a forward, mapped to the prefecture delivery's own file and line."""

    code = fields.String()
    severity = fields.String()
    file = fields.String(allow_none=True, metadata={"description": "the prefecture's own file the row came from"})
    line = fields.Integer(allow_none=True, metadata={"description": "its line in that file"})
    field = fields.String(allow_none=True)
    value = fields.String(allow_none=True)
    expected = fields.String(allow_none=True)
    message_zh = fields.String()
    message_en = fields.String()
    hq_file = fields.String(allow_none=True, metadata={"description": "the forwarded file HQ judged"})
    hq_line = fields.Integer(allow_none=True)


class HqAnswerSchema(Schema):
    """At a province hub: HQ's answer on a forward that carried this delivery's rows."""

    forward = fields.String(metadata={"description": "the province delivery the hub forwarded, e.g. P_42_202611_00"})
    forward_id = fields.Integer()
    state = fields.String(metadata={"description": "built, sent or judged"})
    sent_at = fields.String(allow_none=True)
    hq_delivery_id = fields.Integer(allow_none=True)
    hq_status = fields.String(allow_none=True)
    hq_errors = fields.Integer()
    hq_warnings = fields.Integer()
    judged_at = fields.String(allow_none=True)
    hq_review_state = fields.String(allow_none=True)
    findings = fields.List(fields.Nested(HqFindingSchema))


class NetworkApprovalSchema(Schema):
    """At HQ: one local network's approval at the province hub that forwarded the delivery."""

    latn_id = fields.String()
    by = fields.String()
    at = fields.String()
    versions = fields.List(fields.Dict())


class DeliveryApprovalSchema(Schema):
    """At HQ: what the forwarding province hub said of the delivery's approval."""

    hub = fields.String()
    forwarded_by = fields.String()
    networks = fields.List(fields.Nested(NetworkApprovalSchema))


class DeliverySchema(ReceiptSchema):
    """A delivery with its verdict."""

    channel = fields.String()
    mode = fields.String(allow_none=True)
    party = fields.String(allow_none=True)
    period = fields.String(allow_none=True)
    resend = fields.Integer(allow_none=True)
    validated_at = fields.String(allow_none=True)
    errors = fields.Integer()
    warnings = fields.Integer()
    late = fields.Boolean()
    counts = fields.List(fields.Nested(CodeCountSchema))
    versions = fields.List(fields.Nested(VersionSchema))
    failure = fields.String(allow_none=True, metadata={
        "description": "when status is failed (the server could not validate the delivery): a stable English "
                       "message; never the internal cause"})
    failure_zh = fields.String(allow_none=True, metadata={"description": "the same message in Chinese"})
    failure_code = fields.String(allow_none=True, metadata={"description": "validation_failed when status is failed"})
    failure_detail = fields.String(allow_none=True, metadata={
        "description": "analyst and admin accounts only: the cause the server recorded (null for provinces)"})
    review_state = fields.String(metadata={"description": "HQ's review: open, reviewed, resend_requested, "
                                                          "warnings_accepted"})
    comments = fields.List(fields.Nested(ReviewCommentSchema), metadata={"description": "HQ's comments, oldest first"})
    hq = fields.List(fields.Nested(HqAnswerSchema), metadata={
        "description": "at a province hub: HQ's answers on the forwards carrying this delivery (empty elsewhere)"})
    approval = fields.Nested(DeliveryApprovalSchema, allow_none=True, metadata={
        "description": "at HQ: who approved which networks at the province hub that forwarded it (null otherwise)"})


class DeliveryQueryArgsSchema(Schema):
    """Filters for listing deliveries."""

    cycle = fields.String(validate=validate.Regexp(CYCLE_PATTERN), metadata={
        "description": "a cycle id: 202610, 2026Q3, 2026H2 or 2026"})
    status = fields.String(validate=validate.OneOf(
        ["queued", "validating", "accepted", "accepted_with_warnings", "rejected", "failed"]))
    mode = fields.String(validate=validate.OneOf(["P", "T"]))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class DeliveryPageSchema(Schema):
    """One page of deliveries."""

    items = fields.List(fields.Nested(DeliverySchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


class CycleSchema(Schema):
    """A cycle of the reporting calendar."""

    id = fields.String()
    freq = fields.String()
    name = fields.String()
    begin_date = fields.Date()
    end_date = fields.Date()
    deadline = fields.String(metadata={"description": "ISO 8601, UTC"})
    deadline_beijing = fields.String()
    units_due = fields.List(fields.String())
    state = fields.String()
    remark = fields.String()
    exception_until = fields.String(allow_none=True, metadata={
        "description": "for a province's account: the end (ISO 8601, UTC) of a valid exception HQ granted its "
                       "province for this cycle — deliveries are then taken though the cycle is closed or overdue"})
    exception_until_beijing = fields.String(allow_none=True)


class CycleQueryArgsSchema(Schema):
    """Filters for the calendar."""

    state = fields.String(validate=validate.OneOf(["planned", "open", "closed"]))


class SliceFileSchema(Schema):
    """A file of a list slice (the spec's D_ delivery)."""

    name = fields.String()
    sha256 = fields.String()
    size = fields.Integer()
    url = fields.String()


class ListSliceSchema(Schema):
    """The province's part of the current national list."""

    version = fields.String()
    province = fields.String()
    published_at = fields.String()
    rows = fields.Integer()
    added = fields.Integer()
    changed = fields.Integer()
    removed = fields.Integer()
    files = fields.List(fields.Nested(SliceFileSchema))


class ListVersionSliceSchema(Schema):
    """The province's slice of one published or superseded list version (``GET /api/v1/list/versions``)."""

    version = fields.String(metadata={"description": "e.g. 2026V02; versions order by name, oldest first"})
    state = fields.String(metadata={"description": "published (the version in force) or superseded"})
    published_at = fields.String()
    rows = fields.Integer()
    files = fields.List(fields.Nested(SliceFileSchema))


class CodeAdditionSchema(Schema):
    """One published version and the domain it belongs to."""

    domain = fields.String(required=True)
    # A dict, not a nested schema: its "update" key would be read as dict.update by marshmallow.
    version = fields.Dict(required=True, metadata={"description": (
        "a versions: entry of interface_specs/code_lists/: version, effective_from (YYYY-MM-DD, for cycles "
        "beginning then), based_on, note_zh, note_en, add, update, remove")})


class CodeListsSchema(Schema):
    """The code-list versions HQ has published beyond the standard's YAML, in publishing order."""

    spec_version = fields.String()
    generation = fields.String(metadata={"description": "changes whenever a version is published"})
    additions = fields.List(fields.Nested(CodeAdditionSchema))
