"""Writing raw interaction logs as CSV, the format LogExampleGen reads.

One header line with the column names of `features.RAW_LOG_COLUMNS`, then one
row per impression. A missing value is an empty field; a multi-valued field
(`item_genres`) joins its values with `features.MULTI_VALUE_SEPARATOR`.

Example:
    with RawLogCsvWriter(path) as writer:
        writer.write({"user_id": "u1", "item_id": "v9", ...})
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from watchnext.models import features


def format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return features.MULTI_VALUE_SEPARATOR.join(str(v) for v in value)
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


class RawLogCsvWriter:
    """Streams impression rows (mappings from column name to value) to a CSV file."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] = features.RAW_LOG_COLUMNS):
        self.path = os.fspath(path)
        self.columns = tuple(columns)
        self.rows_written = 0
        self._file = None
        self._writer = None

    def __enter__(self) -> RawLogCsvWriter:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        self._file = open(self.path, "w", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")
        self._writer.writerow(self.columns)
        return self

    def write(self, row: Mapping[str, Any]) -> None:
        unknown = set(row) - set(self.columns)
        if unknown:
            raise KeyError(f"{self.path}: unknown raw-log column(s) {sorted(unknown)}")
        self._writer.writerow([format_value(row.get(name)) for name in self.columns])
        self.rows_written += 1

    def write_all(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.write(row)

    def __exit__(self, *exc_info) -> None:
        self._file.close()
