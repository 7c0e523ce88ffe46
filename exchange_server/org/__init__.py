"""The organisation: Group HQ, provinces and local networks, from Domain_area_id."""
