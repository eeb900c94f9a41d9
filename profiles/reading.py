"""The one checked reader of the files users hand clustersim (traces, deployments, plan
and training files, model configs, GPU specs, profiles, validation records): a regular
file of bounded size, UTF-8 text, JSON or YAML of bounded nesting with numbers Python
can hold; anything else is a ``ClusterSimError`` that names the file and the fix.

Python's own readers fail in ways a user cannot act on: ``json`` accepts ``NaN`` and
``Infinity``, raises ``RecursionError`` on nesting a few thousand deep and
``ValueError`` on an integer of more than 4,300 digits; opening a FIFO or ``/dev/zero``
blocks or never ends.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from profiles.errors import ClusterSimError

__all__ = ["MAX_INPUT_BYTES", "MAX_NESTING", "checked_file", "parse_json", "read_json",
           "read_text", "read_yaml", "refuse_constant"]

MAX_INPUT_BYTES = 8 * 2**30  # the largest file read; public traces are a few GB at most
MAX_NESTING = 64  # YAML files: no input of clustersim nests deeper than a dozen levels


def checked_file(path: str | Path, what: str) -> Path:
    """``path`` when it is a regular file within MAX_INPUT_BYTES."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ClusterSimError(f"{what} {path}: no such file") from None
    except OSError as error:
        raise ClusterSimError(f"{what} {path}: cannot read ({error.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ClusterSimError(f"{what} {path}: {kind}; give a file")
    if info.st_size > MAX_INPUT_BYTES:
        raise ClusterSimError(f"{what} {path}: {info.st_size / 2**30:.1f} GiB is over the "
                              f"{MAX_INPUT_BYTES / 2**30:.0f} GiB limit of an input file")
    return path


def read_text(path: str | Path, what: str) -> str:
    """A checked file's text; a byte-order mark is dropped."""
    path = checked_file(path, what)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ClusterSimError(f"{what} {path}: cannot read ({error.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ClusterSimError(f"{what} {path}: not UTF-8 text (byte {error.start} is "
                              f"0x{data[error.start]:02x}); save it as UTF-8") from None


def _depth(value: Any, limit: int) -> int:
    """The nesting depth of parsed data, stopping past ``limit``."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        level = [item for node in level if isinstance(node, dict | list)
                 for item in (node.values() if isinstance(node, dict) else node)]
    return depth - 1 if not level else depth


def refuse_constant(name: str) -> Any:
    """``json.loads``' ``parse_constant``: NaN and Infinity are not JSON numbers."""
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:20]} overflows a 64-bit float")
    return value


def _number_error(error: ValueError) -> str:
    message = str(error)
    if "integer string conversion" in message:
        return "an integer of thousands of digits; numbers must fit in 64 bits"
    return f"{message}; write a finite number"


def parse_json(text: str, where: str) -> Any:
    """JSON text as Python data: strict numbers, nesting within the parser's depth."""
    try:
        return json.loads(text, parse_constant=refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ClusterSimError(f"{where}: nested thousands of levels deep; no clustersim "
                              "input nests more than a few levels") from None
    except json.JSONDecodeError as error:
        raise ClusterSimError(f"{where}: not valid JSON ({error.msg} at line {error.lineno} "
                              f"column {error.colno})") from None
    except ValueError as error:  # NaN, Infinity, overflow, an integer of too many digits
        raise ClusterSimError(f"{where}: {_number_error(error)}") from None


def read_json(path: str | Path, what: str) -> Any:
    """A checked JSON file's data."""
    return parse_json(read_text(path, what), f"{what} {path}")


def read_yaml(path: str | Path, what: str) -> Any:
    """A checked YAML (or JSON) file's data."""
    import yaml  # NOTE: lazily, so a run given only JSON files never pays its import

    text = read_text(path, what)
    where = f"{what} {path}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ClusterSimError(f"{where}: not valid YAML{at} "
                              f"({getattr(error, 'problem', None) or error})") from None
    except RecursionError:
        raise ClusterSimError(f"{where}: nested thousands of levels deep") from None
    except ValueError as error:  # an integer of too many digits
        raise ClusterSimError(f"{where}: {_number_error(error)}") from None
    if _depth(data, MAX_NESTING) > MAX_NESTING:
        raise ClusterSimError(f"{where}: nested more than {MAX_NESTING} levels deep")
    return data
