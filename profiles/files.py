"""Writing output files whole or not at all, and JSON that reruns reproduce byte for byte.

Every command that writes (a run's outputs, a plan folder, a training summary, a report,
a validation baseline) goes through here, so an interrupted, killed or failed run leaves
the previous outputs or none, never half of them:

- a folder is staged as a hidden sibling (``.NAME.staging-PID-XXXX``), then the old
  folder is moved aside (``.NAME.old-PID-XXXX``), the staged one renamed into place and
  the old one removed; a kill between the two renames leaves no folder, and the next
  write restores the old one before it starts. The whole folder is replaced, so no file
  of an earlier run survives beside the new ones;
- a folder that holds files clustersim did not write is never replaced (it is refused);
- a file is written as a hidden sibling (``.NAME.partial-PID-XXXX``) and renamed;
- leftovers of a killed writer (its process gone) are removed by the next write.

JSON has no NaN, so a metric that does not exist is ``null``.
"""

from __future__ import annotations

import glob
import json
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from profiles.errors import ClusterSimError

__all__ = ["MARKER", "check_output_folder", "to_json_text", "write_folder", "write_text"]

# The file in every folder write_folder writes: it names the files, so a later run
# knows the folder is its own to replace.
MARKER = ".clustersim-output"


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    return value


def to_json_text(data: Any) -> str:
    """Deterministic JSON (sorted keys, NaN as null) for byte-identical reruns."""
    return json.dumps(_clean(data), indent=2, sort_keys=True) + "\n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _leftovers(parent: Path, name: str, kind: str) -> list[Path]:
    """Hidden siblings of ``name`` of this kind whose writer is no longer running."""
    found = []
    for path in parent.glob(f".{glob.escape(name)}.{kind}-*"):
        pid = path.name[len(f".{name}.{kind}-"):].partition("-")[0]
        if not pid.isdigit() or not _alive(int(pid)) or int(pid) == os.getpid():
            found.append(path)
    return sorted(found, key=lambda path: path.stat().st_mtime)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _recover(out: Path) -> None:
    """Undo a killed write of ``out``: restore the folder it had moved aside (when the
    kill came between the renames) and remove its staging and old copies."""
    parent, name = out.parent, out.name
    old = _leftovers(parent, name, "old")
    if old and not out.exists():
        old.pop().rename(out)
    for path in old + _leftovers(parent, name, "staging"):
        _remove(path)


def _check_replaceable(out: Path, names: set[str]) -> None:
    """Refuse to replace a folder that holds files clustersim did not write: files
    beyond those its marker names (or, without a marker, beyond those being written)."""
    if not out.is_dir():
        raise ClusterSimError(f"--out {out}: exists and is not a folder; give a folder path")
    entries = {entry.name for entry in out.iterdir()
               if not entry.name.startswith(".staging-")}  # an older version's leftovers
    try:
        marked = json.loads((out / MARKER).read_text(encoding="utf-8"))["files"]
        names = names | {MARKER, *marked}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    foreign = sorted(entries - names)
    if foreign:
        raise ClusterSimError(
            f"--out {out}: the folder holds files clustersim did not write "
            f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
            "give a new or empty folder, or move those files")


def check_output_folder(out_dir: str | Path) -> None:
    """Refuse early (before a long run) an ``--out`` that write_folder would refuse: a
    file, or a folder of earlier outputs where other files have since been put.

    Raises:
        ClusterSimError: naming the path and the fix.
    """
    out = Path(os.path.abspath(out_dir))
    if out.exists() and (not out.is_dir() or (out / MARKER).is_file()):
        _check_replaceable(out, set())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_folder(out_dir: str | Path, writers: dict[str, Callable[[Path], object]]
                 ) -> list[Path]:
    """Write several files as the folder ``out_dir``, whole or not at all.

    Each ``writers[name](path)`` writes its file into a staging folder beside
    ``out_dir``; only when all have succeeded does the staging folder replace
    ``out_dir`` (see the module's docstring for the steps and what a kill leaves).

    Raises:
        ClusterSimError: the folder cannot be created or written, or ``out_dir`` holds
            files clustersim did not write.
    """
    out = Path(os.path.abspath(out_dir))
    parent, name = out.parent, out.name
    staging: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _recover(out)
        if out.exists():
            _check_replaceable(out, set(writers))
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-{os.getpid()}-", dir=parent))
        staging.chmod(0o777 & ~_umask())  # as mkdir would make it, not mkdtemp's 0700
        for file, write in writers.items():
            write(staging / file)
        (staging / MARKER).write_text(to_json_text({"files": sorted(writers)}),
                                      encoding="utf-8")
        old = None
        if out.exists():  # moved aside whole, in one rename
            old = parent / f".{name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            out.replace(old)
        staging.replace(out)
        staging = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return [out / file for file in writers]
    except OSError as error:
        raise ClusterSimError(f"--out {out}: cannot write outputs "
                              f"({error.strerror or error})") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    """Write a file whole or not at all (a hidden partial file beside it, then a rename).

    Raises:
        ClusterSimError: the file cannot be written (a read-only folder, a full disk).
    """
    path = Path(os.path.abspath(path))
    partial: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in _leftovers(path.parent, path.name, "partial"):
            stale.unlink(missing_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.partial-{os.getpid()}-",
                                        dir=path.parent)
        partial = Path(name)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        partial.chmod(0o666 & ~_umask())  # as open would make it, not mkstemp's 0600
        partial.replace(path)
        partial = None
    except OSError as error:
        raise ClusterSimError(f"{path}: cannot write ({error.strerror or error})") from None
    finally:
        if partial is not None:
            partial.unlink(missing_ok=True)
