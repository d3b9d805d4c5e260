"""Beam transforms of LogExampleGen (no TensorFlow import: they run in the workers).

The driver cuts each input file into pieces at line boundaries and notes each
piece's first line number; the workers read the pieces in parallel, so every
rejected row keeps its exact file and line number, and lines stream from the
input to the output files without being shuffled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
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
CHUNK_BYTES = 8 * 2**20


class Chunk(NamedTuple):
    """A piece of an input file: bytes [start, end) beginning at line first_line (end -1: to the end)."""

    path: str
    start: int
    end: int
    first_line: int


def read_header(path: str) -> str:
    """The header line of one CSV file (checked before any row is read)."""
    with FileSystems.open(path) as handle:
        header = handle.readline().decode("utf-8-sig").rstrip("\r\n")
    if not header.strip():
        raise RawLogHeaderError(f"{path}: line 1: empty file or missing header line")
    RowParser.from_header(load_raw_log_schema(), header, path)
    return header


def plan_chunks(path: str, chunk_bytes: int = CHUNK_BYTES) -> list[Chunk]:
    """Cuts a file into pieces of about chunk_bytes at line boundaries, noting each one's first line.

    One sequential scan in the driver; the workers then read the pieces in
    parallel and still know every line's number. Compressed files are one piece.
    """
    if CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED:
        return [Chunk(path, 0, -1, 2)]
    chunks = []
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        offset = len(handle.readline())
        line_number = 2
        while block := handle.read(chunk_bytes):
            if not block.endswith(b"\n"):
                block += handle.readline()
            chunks.append(Chunk(path, offset, offset + len(block), line_number))
            offset += len(block)
            line_number += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
    return chunks


def read_chunk(chunk: Chunk) -> Iterator[tuple[str, int, bytes]]:
    """(file, line number, raw bytes) of every data line of a piece; blank lines carry nothing."""
    with FileSystems.open(chunk.path) as handle:
        if chunk.end < 0:
            handle.readline()
            lines = iter(handle.readline, b"")
        else:
            handle.seek(chunk.start)
            lines = iter(handle.read(chunk.end - chunk.start).splitlines(keepends=True))
        for line_number, raw in enumerate(lines, start=chunk.first_line):
            if raw.strip():
                yield chunk.path, line_number, raw


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
        if self.feature and self.feature in row:
            key = repr(row[self.feature][0])
        else:  # no partition feature (or this row lacks it): the whole row decides
            key = repr(sorted(row.items()))
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
