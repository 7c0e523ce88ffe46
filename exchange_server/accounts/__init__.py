"""Accounts: provinces (API tokens, SSH keys), HQ analysts and admins."""
