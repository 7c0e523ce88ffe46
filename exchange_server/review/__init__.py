"""HQ's review of rejected and accepted-with-warnings deliveries: states, comments to the province."""
