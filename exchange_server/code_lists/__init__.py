"""Code-list versions HQ adds at run time: proposed, then published (in force from their date), or withdrawn.

The standard's YAML in ``interface_specs/code_lists/`` is where each code list starts; a
published version here is laid over it (:func:`schemas.with_code_versions`) by every
process that validates, so it is in force without a restart, for cycles that begin on or
after its effective date. Provinces' agents fetch the same versions (API and SFTP outbox).
"""
