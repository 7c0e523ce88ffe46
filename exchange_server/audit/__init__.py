"""The audit log: every state change, who, when and what; append-only."""
