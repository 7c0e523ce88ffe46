"""The commented configuration ``province-agent init`` writes."""
from __future__ import annotations

from schemas import Spec

HEAD = """# province-agent configuration / 省公司代理配置
# Everything the scheduled agent needs. Secrets are NOT written here: the API token and the
# SSH key live in their own files (mode 600), named below. Paths are relative to this file.

[agent]
party = "{party}"                    # the province (GB/T 2260 code), or a local network's area code (e.g. "0710")
state_dir = "state"                 # state.db, the run lock, fetched list versions, the spool of built deliveries
export_dir = "exports"              # where the CRM exports arrive

[server]
transport = "{transport}"                # http or sftp
url = "{url}"       # HQ's exchange server (HTTP API: calendar, verdicts; uploads when transport = "http")
token_file = "token"                # the API token HQ issued (exchange-server token create)
ca_file = ""                         # HQ's CA certificate (PEM) when HQ's certificate is from a private CA;
                                    # empty: the system's trust store. HQ's certificate is always checked
verify_tls = true                   # keep on: false stops checking who answers (warned about on every run)
timeout = 300

[sftp]                              # used when transport = "sftp"
host = "{host}"
port = {sftp_port}
user = "prov{party}"
key_file = "id_ed25519"             # the private key whose public half HQ registered
known_hosts = "known_hosts"         # HQ's host key; never accepted blindly

[retry]
attempts = 5                        # per operation; waits grow 2 s, 4 s, 8 s ... up to max_seconds, with jitter
base_seconds = 2
max_seconds = 300
verdict_timeout = 1800              # how long submit/run wait for HQ's verdict before leaving it to the next run

[output]
format = "txt"                      # txt or xml
encoding = "GB18030"                # GB18030 or UTF-8
delimiter = "PIPE"                  # PIPE, TAB, COMMA, CARET or US

# One [units.<NAME>] table per unit you deliver. Keys:
#   source      file name or glob under export_dir; {{cycle}} {{party}} {{year}} {{month}} are filled in
#   format      csv, xlsx or spec (already in the standard's format); default from the file extension
#   encoding    of a CSV: UTF-8 (a BOM is fine) or GB18030;  delimiter: of a CSV, default ","
#   sheet       of an XLSX (default: the first);  header_row: default 1
#   [units.<NAME>.columns]    FIELD = "column header in the export"
#   [units.<NAME>.constants]  FIELD = "value" (placeholders allowed), e.g. CYCLE_ID = "{{cycle}}"
#   header_row  the row of the column headers; title and unit rows (单位：元) above it are ignored
#   skip_rows_matching  total rows to leave out, default ["合计", "小计", "总计"] (in a row's first cells)
#   amount_unit "万元" (or "千元") when the export counts money in 万元: multiplied exactly into 元;
#               a table FIELD = "万元" sets it per column
#   own_rows_only  a local network's agent keeps only its own rows (LATN_ID) of a province-wide
#               export; default true when party is a network code, false turns it off
#   [units.<NAME>.dates]      FIELD = "%Y-%m-%d"   (how the export writes dates)
#   [units.<NAME>.defaults]   FIELD = "value used when the export's cell is empty"
# Coded fields need no translation: a code list's own names are understood (武汉 or 武汉本地网 ->
# 027, 银行托收 -> 03, 是/否 -> Y/N). Only for names of your own, write ONE table per code list,
# used by every unit and field of that list:
#   [codes.Domain_c_type_id]
#   "钢铁企业" = "1401"
# (per field, [units.<NAME>.values.FIELD] "export value" = "code" also works; with values_strict = true
# a value that is neither a code, a name, nor in the tables is an error.)
# Every field of the unit is listed below with its Chinese name; map the ones your export has.
"""


def render_template(spec: Spec, party: str = "42", transport: str = "http", url: str = "https://hq.example:8080",
                    host: str = "hq.example", sftp_port: int = 8022) -> str:
    """The configuration template, with one commented mapping table per upload unit."""
    out = [HEAD.format(party=party, transport=transport, url=url, host=host, sftp_port=sftp_port)]
    province = party
    if len(party) > 2:  # a local network: its province, from the area code list
        entry = spec.domain("Domain_area_id").current.codes.get(party)
        province = entry.parent if entry is not None and entry.parent else "?"
    for unit in spec.units:
        if unit.direction != "up":
            continue
        out.append(f"\n[units.{unit.name}]                 # {unit.code} {unit.name_zh} / {unit.name_en}")
        out.append(f'source = "{unit.name.lower()}_{{cycle}}.csv"')
        out.append('encoding = "GB18030"')
        out.append(f"[units.{unit.name}.constants]")
        if unit.has_field("CYCLE_ID"):
            out.append('CYCLE_ID = "{cycle}"')
        if unit.has_field("PROV_ID"):
            out.append(f'PROV_ID = "{province}"')
        out.append(f"[units.{unit.name}.columns]")
        for f in unit.fields:
            if f.id in ("CYCLE_ID", "PROV_ID"):
                continue
            need = "required" if f.required else "optional"
            out.append(f'{f.id} = "{f.name_zh}"{" " * max(1, 28 - len(f.id) - len(f.name_zh) * 2)}'
                       f"# {f.name_en}, {f.type_label}, {need}")
    return "\n".join(out) + "\n"
