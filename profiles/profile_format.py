"""Kernel profiles on disk: one folder per GPU, one table per operation, one metadata file.

    my-h100/
      metadata.json        where, when and how it was measured, and each table's status
      gemm.csv             m, n, k, time_s
      attn_prefill.csv     batch, q_len, kv_len, num_heads, num_kv_heads, head_dim, time_s
      attn_decode.csv      batch, kv_len, num_heads, num_kv_heads, head_dim, time_s
      elementwise.csv      op, num_tokens, hidden, time_s
      memcpy.csv           direction, bytes, time_s
      collective.csv       op, num_gpus, bytes, time_s
      step_prefill.csv     model, tp, batch, prompt_tokens, time_s   (whole forward passes)
      step_decode.csv      model, tp, batch, prompt_tokens, output_tokens, time_s

``metadata.json`` names the GPU (a catalog name), how many and how they were linked,
driver, CUDA or ROCm and torch versions, dtype, date, the command that made it, the
repetitions, and for each table whether it is ``measured`` or ``derived``; a profile
imported from another tool's data (``profiles.importers``) also names its ``source`` and
the ``models`` whose shapes it covers. A profile made on a user's own GPU drops in beside
ours; :func:`load_profile` refuses a malformed or
mismatched one with a one-line message.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from profiles.errors import ClusterSimError, format_validation_error
from profiles.files import write_folder
from profiles.reading import read_json

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OP_COLUMNS", "KernelProfile", "ProfileMetadata", "command_line", "device_matches",
           "load_profile", "write_profile"]

# The shape columns of each operation's table (every table also has time_s).
OP_COLUMNS: dict[str, tuple[str, ...]] = {
    "gemm": ("m", "n", "k"),
    "attn_prefill": ("batch", "q_len", "kv_len", "num_heads", "num_kv_heads", "head_dim"),
    "attn_decode": ("batch", "kv_len", "num_heads", "num_kv_heads", "head_dim"),
    "elementwise": ("op", "num_tokens", "hidden"),
    "memcpy": ("direction", "bytes"),
    "collective": ("op", "num_gpus", "bytes"),
    "step_prefill": ("model", "tp", "batch", "prompt_tokens"),
    "step_decode": ("model", "tp", "batch", "prompt_tokens", "output_tokens"),
}
_TEXT_COLUMNS = {"op", "direction", "model"}


class TableInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    file: str
    status: Literal["measured", "derived"]
    note: str = ""


class ProfileMetadata(BaseModel):
    """Where, when and how a profile was made."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    gpu: str = Field(description="catalog name the profile is for")
    device_name: str = Field(description="what the runtime reported, e.g. 'NVIDIA H100'")
    num_gpus: int = Field(ge=1)
    interconnect: str
    driver: str
    runtime: str = Field(description="CUDA or ROCm version, or 'cpu'")
    torch: str
    dtype: Literal["bf16", "fp16", "fp8", "fp32"]
    date: str
    command: str
    repetitions: int = Field(ge=1)
    warmup: int = Field(ge=0)
    tables: dict[str, TableInfo]
    source: str = Field(default="", description="where imported data came from, if imported")
    models: list[str] = Field(default=[], description="models whose shapes it covers")


@dataclass(frozen=True)
class KernelProfile:
    """A loaded, validated profile: metadata and one DataFrame per operation."""

    metadata: ProfileMetadata
    tables: dict[str, pd.DataFrame]
    folder: Path

    def status(self, op: str) -> str:
        return self.metadata.tables[op].status


def device_matches(device_name: str, gpu: str) -> bool:
    """Whether a runtime's device name is the catalog GPU's chip: its family (the name's
    first part, "H100" of "H100-SXM5-80GB") appears in it. "CPU x86_64" matches none."""
    family = gpu.split("-")[0].lower()
    return family in device_name.lower()


def load_profile(folder: str | Path, expected_gpu: str | None = None) -> KernelProfile:
    """Read and check a profile folder.

    Args:
        folder: the profile's folder.
        expected_gpu: the catalog GPU the caller will use it for; a profile made for
            another GPU, or on another device (a CPU run labelled as a GPU), is refused.

    Raises:
        ClusterSimError: missing or malformed metadata or table, or a GPU mismatch.
    """
    folder = Path(folder)
    meta_path = folder / "metadata.json"
    if not meta_path.is_file():
        raise ClusterSimError(f"profile {folder}: no metadata.json; is this a profile folder?")
    try:
        metadata = ProfileMetadata.model_validate(read_json(meta_path, "profile"))
    except ValidationError as error:
        raise ClusterSimError(format_validation_error(error, f"profile {meta_path}")) from None
    if expected_gpu is not None and metadata.gpu.lower() != expected_gpu.lower():
        raise ClusterSimError(f"profile {folder} was measured on {metadata.gpu}, not "
                              f"{expected_gpu}; profile that GPU or pass its own folder")
    if expected_gpu is not None and not device_matches(metadata.device_name, expected_gpu):
        raise ClusterSimError(
            f"profile {folder} is labelled {metadata.gpu} but was measured on "
            f"{metadata.device_name!r}; it predicts only the device it ran on: measure it "
            f"on a {expected_gpu} ('clustersim profile --gpu ...') or drop --profile")
    tables: dict[str, pd.DataFrame] = {}
    for op, info in metadata.tables.items():
        if op not in OP_COLUMNS:
            raise ClusterSimError(f"profile {meta_path}: table {op!r} is unknown; known: "
                                  f"{', '.join(OP_COLUMNS)}")
        tables[op] = _read_table(folder / info.file, op)
    return KernelProfile(metadata, tables, folder)


def _read_table(path: Path, op: str) -> pd.DataFrame:
    import pandas as pd  # NOTE: lazily, so only a run with a profile pays its import

    if not path.is_file():
        raise ClusterSimError(f"profile table {path}: missing (listed in metadata.json)")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ClusterSimError(f"profile table {path}: not a readable CSV ({error})") from None
    needed = [*OP_COLUMNS[op], "time_s"]
    missing = [column for column in needed if column not in frame.columns]
    if missing:
        raise ClusterSimError(f"profile table {path}: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise ClusterSimError(f"profile table {path}: no rows")
    for column in needed:
        if column in _TEXT_COLUMNS:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | (values <= 0) | ~np.isfinite(values)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ClusterSimError(f"profile table {path} row {row + 2}: column '{column}' must "
                                  f"be a positive number, got {frame[column].iloc[row]!r}")
        frame[column] = values
    return frame


def write_profile(folder: str | Path, metadata: ProfileMetadata,
                  tables: dict[str, pd.DataFrame]) -> None:
    """Write a profile folder whole or not at all (``profiles.files.write_folder``)."""
    def table(frame: pd.DataFrame) -> Callable[[Path], object]:
        return lambda path: frame.to_csv(path, index=False, float_format="%.9g")

    writers = {metadata.tables[op].file: table(frame) for op, frame in tables.items()}
    writers["metadata.json"] = lambda path: path.write_text(
        metadata.model_dump_json(indent=2) + "\n")
    write_folder(folder, writers)


def command_line() -> str:
    """The command that is running, as a user would retype it: the program by its name
    (not the install path), then its arguments."""
    return " ".join(shlex.quote(arg) for arg in [Path(sys.argv[0]).name, *sys.argv[1:]])
