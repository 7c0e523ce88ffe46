"""Realistic, rule-abiding sample deliveries for demos, tests and benchmarks."""
from .generator import GenerationResult, SampleModel, customer_rows, generate, province_list_ids

__all__ = ["GenerationResult", "SampleModel", "customer_rows", "generate", "province_list_ids"]
