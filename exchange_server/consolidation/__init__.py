"""Consolidation: accepted rows as facts, kept current per scope, and the group roll-ups over them."""
