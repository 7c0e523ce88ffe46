"""The list in force for a cycle, cut to one local network's part (what a province hub serves a prefecture)."""
from __future__ import annotations

import datetime as dt

from schemas.lists import ListEntry, ListHistory

D = dt.date


def test_a_networks_part_is_the_customers_it_leads_for_the_cycle() -> None:
    history = ListHistory([
        ListEntry("2026V01", "G420000001", "42", D(2026, 1, 1), None, "A", "027"),
        ListEntry("2026V01", "G420000002", "42", D(2026, 1, 1), None, "A", "0710"),
        ListEntry("2026V01", "G420000003", "42", D(2026, 1, 1), None, "A", "027"),
        # From December customer 3 is led by Yichang: November's part of 027 still has it.
        ListEntry("2026V02", "G420000003", "42", D(2026, 12, 1), None, "M", "0717"),
        ListEntry("2026V01", "G330000001", "33", D(2026, 1, 1), None, "A", "0571"),
    ])
    assert history.for_cycle("202611", "42", "027").ids == {"G420000001", "G420000003"}
    assert history.for_cycle("202612", "42", "027").ids == {"G420000001"}
    assert history.for_cycle("202612", "42", "0717").ids == {"G420000003"}
    assert history.for_cycle("202612", "42").ids == {"G420000001", "G420000002", "G420000003"}
    part = history.for_cycle("202612", "42", "027")
    # Why a customer is not on the part: another network of the province leads it.
    assert "0717" in part.explain("G420000003")
    assert "lead province 33" in part.explain("G330000001")
