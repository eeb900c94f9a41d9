"""A run's per-request results as numpy columns, without pandas.

A serving run returns :class:`RequestRows`: one numpy array per column, in trace order.
The summary, the planners and ``requests.csv`` read the arrays directly, so a plain
``simulate`` never imports pandas (it costs more start-up time than a small run's whole
simulation); ``to_pandas()`` gives the DataFrame that ``SimulationResult.requests`` is,
column for column and dtype for dtype what the runs returned before the rows had a type
of their own, and :meth:`csv_text` writes what pandas' ``to_csv(index=False,
float_format=...)`` writes (tested).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping
from itertools import chain
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RequestRows"]


class RequestRows:
    """Columns of equal length, by name, in order.

    Args:
        columns: name → values (anything ``np.asarray`` takes; a column of mixed or
            string values, such as request ids, is kept as an object array).
    """

    def __init__(self, columns: Mapping[str, Any]) -> None:
        self._columns: dict[str, np.ndarray] = {}
        self._length: int | None = None
        for name, values in columns.items():
            self[name] = values

    def __len__(self) -> int:
        return self._length or 0

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._columns[name]

    def __setitem__(self, name: str, values: Any) -> None:
        array = _column(values)
        if self._length is not None and len(array) != self._length:
            raise ValueError(f"column {name!r} has {len(array)} values, not {self._length}")
        self._length = len(array)
        self._columns[name] = array

    def copy(self) -> RequestRows:
        return RequestRows({name: values.copy() for name, values in self._columns.items()})

    def take(self, mask: np.ndarray) -> RequestRows:
        """The rows where ``mask`` is true (or at the given indices)."""
        return RequestRows({name: values[mask] for name, values in self._columns.items()})

    def to_pandas(self) -> pd.DataFrame:
        import pandas as pd

        # NOTE: an object column goes in as a list, so pandas infers its dtype as it
        # did from the lists the rows were built of (ints stay int64).
        return pd.DataFrame({name: values.tolist() if values.dtype == object else values
                             for name, values in self._columns.items()})

    def csv_text(self, float_format: str = "%.9g") -> str:
        """The rows as CSV: a header, then one line per row; floats through
        ``float_format``, NaN as an empty field, as pandas writes them."""
        if len(self._columns) > 1 and all(values.dtype.kind in "iubf"
                                          for values in self._columns.values()):
            # Numbers only: no field needs quoting, so the text is csv.writer's without
            # it, made by one format of the whole table over its values in row order.
            fields, formats = [], []
            for values in self._columns.values():
                if values.dtype.kind == "f" and np.isnan(values).any():
                    fields.append(_formatted(values, float_format))  # NaN: empty
                    formats.append("%s")
                else:
                    fields.append(values.tolist())
                    formats.append(float_format if values.dtype.kind == "f" else "%s")
            row = ",".join(formats) + "\n"
            return (",".join(self._columns) + "\n"
                    + (row * len(self)) % tuple(chain.from_iterable(zip(*fields, strict=True))))
        columns = [_formatted(values, float_format) for values in self._columns.values()]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self._columns)
        writer.writerows(zip(*columns, strict=True))
        return out.getvalue()


def _column(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    values = list(values)
    if all(type(value) is int for value in values):
        return np.array(values, dtype=np.int64)
    if all(type(value) is float for value in values):
        return np.array(values, dtype=np.float64)
    if all(type(value) is bool for value in values):
        return np.array(values, dtype=bool)
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _formatted(values: np.ndarray, float_format: str) -> list[str]:
    if values.dtype.kind == "f":
        if not np.isnan(values).any():  # one format per value, no test
            return (((float_format + "\n") * len(values)) % tuple(values.tolist())
                    ).split("\n")[:-1]
        return ["" if math.isnan(value) else float_format % value for value in values.tolist()]
    if values.dtype.kind in "iub":
        return [str(value) for value in values.tolist()]
    return ["" if value is None or (isinstance(value, float) and math.isnan(value))
            else str(value) for value in values.tolist()]
