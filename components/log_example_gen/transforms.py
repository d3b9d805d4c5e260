"""Beam transforms of LogExampleGen (no TensorFlow import: they run in the workers).

Each input file is read by one worker, line by line, so every rejected row
keeps its exact file and line number; the lines are then reshuffled so that
parsing, validation, serialization and writing run in parallel across workers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from tfx.proto import example_gen_pb2

from watchnext.components.log_example_gen.raw_log import (
    ParsedRow,
    RawLogHeaderError,
    RejectedRow,
    RowParser,
    load_raw_log_schema,
)

METRICS_NAMESPACE = "watchnext.LogExampleGen"
REJECTED_COUNTER = "rows_rejected"


def read_header(path: str) -> str:
    """The header line of one CSV file (checked before any row is read)."""
    with FileSystems.open(path) as handle:
        header = handle.readline().decode("utf-8-sig").rstrip("\r\n")
    if not header.strip():
        raise RawLogHeaderError(f"{path}: line 1: empty file or missing header line")
    RowParser.from_header(load_raw_log_schema(), header, path)
    return header


def read_lines(path: str) -> Iterator[tuple[str, int, bytes]]:
    """(file, line number, raw bytes) of every data line; blank lines carry nothing and are skipped."""
    with FileSystems.open(path) as handle:
        handle.readline()
        for line_number, raw in enumerate(handle, start=2):
            if raw.strip():
                yield path, line_number, raw


class ParseLine(beam.DoFn):
    """Parses lines spread over the workers, with one RowParser per file."""

    def __init__(self, headers: dict[str, str]):
        self.headers = headers
        self.parsers: dict[str, RowParser] = {}

    def process(self, element: tuple[str, int, bytes]):
        path, line_number, raw = element
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            yield RejectedRow(path, line_number, f"not valid UTF-8: {error}", text)
            return
        parser = self.parsers.get(path)
        if parser is None:
            parser = RowParser.from_header(load_raw_log_schema(), self.headers[path], path)
            self.parsers[path] = parser
        yield parser.parse(line, line_number)


class SplitByHash:
    """Deterministic split assignment from a feature's value (TFX hash_buckets semantics)."""

    def __init__(self, output_config: example_gen_pb2.Output):
        splits = output_config.split_config.splits
        self.names = [split.name for split in splits]
        self.feature = output_config.split_config.partition_feature_name
        self.bounds = []
        total = 0
        for split in splits:
            total += split.hash_buckets
            self.bounds.append(total)
        self.total = total

    def __call__(self, row: ParsedRow, num_partitions: int) -> int:
        key = repr(row[self.feature][0]) if self.feature else repr(sorted(row.items()))
        bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % self.total
        return next(index for index, bound in enumerate(self.bounds) if bucket < bound)


def counting(name: str):
    counter = beam.metrics.Metrics.counter(METRICS_NAMESPACE, name)

    def increment(element: Any) -> Any:
        counter.inc()
        return element

    return increment


def route(element: ParsedRow | RejectedRow):
    if isinstance(element, RejectedRow):
        yield beam.pvalue.TaggedOutput("rejected", json.dumps(element.to_dict(), ensure_ascii=False))
    else:
        yield element
