"""The one exception a user can cause: a bad file, an unknown name, a config that cannot run.

Every layer raises :class:`ClusterSimError` with a one-line message that names the field
at fault and the fix; the CLI prints it and exits non-zero, the Python API lets it
propagate. Anything else escaping the library is a bug, not a user error.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ClusterSimError", "format_validation_error"]


class ClusterSimError(ValueError):
    """A user error: the message is one line naming the field at fault and the fix."""


def format_validation_error(error: Any, source: str) -> str:
    """Turn a pydantic ``ValidationError`` into one line naming the first bad field.

    Args:
        error: the ``pydantic.ValidationError`` raised while validating ``source``.
        source: what was being read, e.g. ``"workload trace.json"``.

    Returns:
        ``"<source>: <field path>: <message> (and N more errors)"``.
    """
    errors = error.errors()
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {len(errors) - 1} more errors)" if len(errors) > 1 else ""
    if not first["loc"] and first["type"] == "value_error":
        # A check across fields names its own field: "<field>: <what to do>".
        return f"{source}: {first['msg'].removeprefix('Value error, ')}{more}"
    value = first.get("input")
    shown = f", got {value!r}" if value is not None and not isinstance(value, dict | list) else ""
    return f"{source}: field '{loc}': {first['msg'].removeprefix('Value error, ')}{shown}{more}"
