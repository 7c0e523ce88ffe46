"""The standard as Python objects: model, loader and the rule expression language."""
from .loader import default_spec_dir, load_spec, with_code_versions
from .model import CodeDomain, CodeEntry, CodeListVersion, ErrorCode, Field, Rule, Spec, Unit

__all__ = ["CodeDomain", "CodeEntry", "CodeListVersion", "ErrorCode", "Field", "Rule", "Spec", "Unit",
           "default_spec_dir", "load_spec", "with_code_versions"]
