"""Request traces: the schema, loaders of public trace formats, and generators."""

from workloads.generators import GeneratorSpec, generate, parse_distribution
from workloads.loaders import FORMATS, load_workload, save_workload
from workloads.schema import RequestRecord, RequestTrace

__all__ = [
    "FORMATS",
    "GeneratorSpec",
    "RequestRecord",
    "RequestTrace",
    "generate",
    "load_workload",
    "parse_distribution",
    "save_workload",
]
