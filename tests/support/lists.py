"""Writing top-500 list versions for tests: entries with their own dates and change types."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tests.support.deliveries import valid_rows

COLUMNS = ["NATIONAL_CUST_ID", "CUST_RANK", "CUST_NAME", "GROUP_PARENT_NAME", "C_TYPE_ID", "LEVEL_ID",
           "LEAD_PROV_ID", "LEAD_LATN_ID", "HQ_MANAGER_NAME", "HQ_MANAGER_PHONE", "EFF_DATE", "EXP_DATE",
           "CHANGE_TYPE"]


@dataclass(frozen=True)
class Entry:
    """One customer of a list version as HQ writes it."""

    cust: str
    prov: str
    net: str
    eff: str = "20260101"
    exp: str = ""
    change: str = "U"  # the loader works the change out itself, except D (a removal and its date)


def write_list_csv(path: Path, spec: Any, entries: Iterable[Entry]) -> Path:
    """A list version as the CSV an admin uploads (UTF-8, header row)."""
    ctype = valid_rows(spec).rows["VIP_CUST_INFO"][0]["C_TYPE_ID"]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for rank, e in enumerate(entries, start=1):
            w.writerow([e.cust, rank, f"测试客户{e.cust}", "", ctype, "1", e.prov, e.net, "王芳", "010-66660000",
                        e.eff, e.exp, e.change])
    return path
