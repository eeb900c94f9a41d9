"""Request traces: the schema, loaders of public trace formats, and generators."""

from workloads.generators import (
    ChatSpec,
    GeneratorSpec,
    generate,
    generate_chat,
    parse_distribution,
)
from workloads.loaders import FORMATS, load_workload, save_workload, workload_text
from workloads.schema import RequestRecord, RequestTrace

__all__ = [
    "FORMATS",
    "ChatSpec",
    "GeneratorSpec",
    "RequestRecord",
    "RequestTrace",
    "generate",
    "generate_chat",
    "load_workload",
    "parse_distribution",
    "save_workload",
    "workload_text",
]
