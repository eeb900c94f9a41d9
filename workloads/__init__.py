"""Request traces: the schema, loaders of public trace formats, and generators."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workloads.loaders import FORMATS, load_workload, save_workload, workload_text
from workloads.schema import RequestRecord, RequestTrace

if TYPE_CHECKING:
    from workloads.generators import (
        ChatSpec,
        GeneratorSpec,
        generate,
        generate_chat,
        parse_distribution,
    )

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

_GENERATORS = frozenset(("ChatSpec", "GeneratorSpec", "generate", "generate_chat",
                         "parse_distribution"))


def __getattr__(name: str) -> Any:
    """The generators' names, imported on first use: replaying a trace never needs them
    (their pydantic models cost start-up time)."""
    if name in _GENERATORS:
        from workloads import generators

        return getattr(generators, name)
    raise AttributeError(f"module 'workloads' has no attribute {name!r}")
