"""The contract package both ends import: the standard, generated schemas, validation."""
from ._exceptions import CheckFileError, ExpressionError, FileNameError, SchemasError, SpecError
from .spec import CodeDomain, CodeEntry, CodeListVersion, ErrorCode, Field, Rule, Spec, Unit, load_spec, with_code_versions

__all__ = ["CheckFileError", "CodeDomain", "CodeEntry", "CodeListVersion", "ErrorCode", "ExpressionError", "Field",
           "FileNameError", "Rule", "SchemasError", "Spec", "SpecError", "Unit", "load_spec", "with_code_versions"]
