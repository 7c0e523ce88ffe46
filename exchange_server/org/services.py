"""Keeping the org tree in step with Domain_area_id."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas import Spec

from .models import GROUP, LOCAL_NETWORK, PROVINCE, Area


class OrgService:
    """Reads and refreshes the organisation (HQ, provinces, local networks)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def sync_from_spec(self, spec: Spec, day: dt.date, scope: str | None = None) -> tuple[int, int]:
        """Load every area code ever listed; those in force on ``day`` are active. Returns (added, updated).

        ``scope`` (a province hub's province) keeps only that province and its local
        networks active: the hub's completeness, roll-ups and accounts cover its own
        province, and nobody can be given an account for another province there.
        """
        domain = spec.domain("Domain_area_id")
        current = domain.version_on(day)
        known = {a.code: a for a in self.session.scalars(select(Area))}
        added = updated = 0
        # Oldest version first, so a code's latest name wins; parents come before children.
        seen: dict[str, tuple[str, str | None, str, str, str]] = {}
        for version in domain.versions:
            if version.effective_from > day:
                continue
            for c in version.codes.values():
                level = c.level or (GROUP if c.code == "00" else PROVINCE)
                seen[c.code] = (level, c.parent, c.name_zh, c.name_en, version.version)
        order = {GROUP: 0, PROVINCE: 1, LOCAL_NETWORK: 2}
        for code, (level, parent, zh, en, ver) in sorted(seen.items(), key=lambda kv: order.get(kv[1][0], 3)):
            active = code in current.codes and (scope is None or level == GROUP or code == scope or parent == scope)
            area = known.get(code)
            if area is None:
                self.session.add(Area(code=code, level=level, parent_code=parent, name_zh=zh, name_en=en,
                                      active=active, code_list_version=ver))
                added += 1
            elif (area.level, area.parent_code, area.name_zh, area.name_en, area.active) != (level, parent, zh, en,
                                                                                              active):
                area.level, area.parent_code, area.name_zh, area.name_en, area.active = level, parent, zh, en, active
                area.code_list_version = ver
                updated += 1
            self.session.flush()
        return added, updated

    def get(self, code: str) -> Area | None:
        """The area with this code."""
        return self.session.get(Area, code)

    def province_of(self, code: str) -> str | None:
        """The province of an area: itself for a province, its parent for a local network; None if unknown."""
        area = self.session.get(Area, code)
        if area is None:
            return None
        return area.parent_code if area.level == LOCAL_NETWORK else area.code

    def provinces(self) -> list[Area]:
        """Active provinces in code order."""
        return list(self.session.scalars(select(Area).where(Area.level == PROVINCE, Area.active).order_by(Area.code)))

    def networks_of(self, province: str) -> list[Area]:
        """Active local networks of a province."""
        return list(self.session.scalars(select(Area).where(Area.parent_code == province, Area.active,
                                                            Area.level == LOCAL_NETWORK).order_by(Area.code)))
