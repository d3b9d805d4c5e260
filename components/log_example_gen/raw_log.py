"""Parsing and validating raw interaction-log rows against the raw-log schema.

The schema (`schemas/raw_log/schema.pbtxt`) is the single source of truth for
each field's type, whether it may be missing, and its allowed values; this
module reads it and turns it into per-field parsers.

A row that does not fit (wrong field count, a non-numeric number, a value
outside its enum or range, a required field left empty) is not an exception:
`RowParser.parse` returns a `RejectedRow` that names the file, the line and the
field, so callers can count it and write it aside without losing it.

Example:
    parser = RowParser.from_header(load_raw_log_schema(), header_line, "logs.csv")
    result = parser.parse(line, line_number=2)
    if isinstance(result, RejectedRow): ...
    else: example = to_tf_example(result)
"""

from __future__ import annotations

import csv
import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from watchnext.models import features
from watchnext.schemas import RAW_LOG_SCHEMA

Value = bytes | int | float
ParsedRow = dict[str, list[Value]]


@dataclasses.dataclass(frozen=True)
class RejectedRow:
    """A row set aside, with where it came from and why."""

    file: str
    line_number: int
    reason: str
    raw_line: str

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


class RawLogHeaderError(ValueError):
    """The header line of a raw-log file cannot be used (the whole file is refused)."""


@functools.cache
def load_raw_log_schema(path: str = str(RAW_LOG_SCHEMA)) -> schema_pb2.Schema:
    schema = schema_pb2.Schema()
    text_format.Parse(Path(path).read_text(encoding="utf-8"), schema)
    return schema


def _split_csv_line(line: str) -> list[str]:
    return next(csv.reader([line]))


@dataclasses.dataclass(frozen=True)
class FieldParser:
    """Turns one CSV field into the feature's values, or raises ValueError with a reason."""

    name: str
    required: bool
    multivalent: bool
    convert: Callable[[str], Value]

    def __call__(self, text: str) -> list[Value]:
        text = text.strip()
        if not text:
            if self.required:
                raise ValueError(f"field '{self.name}' is required but empty")
            return []
        parts = text.split(features.MULTI_VALUE_SEPARATOR) if self.multivalent else [text]
        try:
            return [self.convert(part.strip()) for part in parts]
        except ValueError as error:
            raise ValueError(f"field '{self.name}': {error}") from None


def _int_converter(feature: schema_pb2.Feature) -> Callable[[str], int]:
    domain = feature.int_domain if feature.HasField("int_domain") else None

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        if domain is not None and domain.HasField("min") and value < domain.min:
            raise ValueError(f"{value} is below the minimum {domain.min}")
        if domain is not None and domain.HasField("max") and value > domain.max:
            raise ValueError(f"{value} is above the maximum {domain.max}")
        return value

    return convert


def _float_converter(feature: schema_pb2.Feature) -> Callable[[str], float]:
    domain = feature.float_domain if feature.HasField("float_domain") else None

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{text!r} is not a finite number")
        if domain is not None and domain.HasField("min") and value < domain.min:
            raise ValueError(f"{value} is below the minimum {domain.min}")
        if domain is not None and domain.HasField("max") and value > domain.max:
            raise ValueError(f"{value} is above the maximum {domain.max}")
        return value

    return convert


def _bytes_converter(feature: schema_pb2.Feature, schema: schema_pb2.Schema) -> Callable[[str], bytes]:
    allowed: frozenset[str] | None = None
    if feature.HasField("domain"):
        domains = {d.name: d for d in schema.string_domain}
        allowed = frozenset(domains[feature.domain].value)

    def convert(text: str) -> bytes:
        if allowed is not None and text not in allowed:
            raise ValueError(f"{text!r} is not one of {sorted(allowed)}")
        return text.encode("utf-8")

    return convert


def field_parser(feature: schema_pb2.Feature, schema: schema_pb2.Schema) -> FieldParser:
    if feature.type == schema_pb2.INT:
        convert = _int_converter(feature)
    elif feature.type == schema_pb2.FLOAT:
        convert = _float_converter(feature)
    else:
        convert = _bytes_converter(feature, schema)
    return FieldParser(
        name=feature.name,
        required=feature.presence.min_fraction >= 1.0,
        multivalent=not feature.value_count.HasField("max") or feature.value_count.max > 1,
        convert=convert,
    )


@dataclasses.dataclass(frozen=True)
class RowParser:
    """Parses the data lines of one raw-log CSV file, given its header."""

    file: str
    columns: tuple[str, ...]
    parsers: tuple[FieldParser, ...]

    @classmethod
    def from_header(cls, schema: schema_pb2.Schema, header_line: str, file: str) -> RowParser:
        columns = tuple(name.strip() for name in _split_csv_line(header_line))
        by_name = {feature.name: feature for feature in schema.feature}
        unknown = [name for name in columns if name not in by_name]
        if unknown:
            raise RawLogHeaderError(f"{file}: line 1 (header): unknown column(s) {unknown}")
        duplicated = sorted({name for name in columns if columns.count(name) > 1})
        if duplicated:
            raise RawLogHeaderError(f"{file}: line 1 (header): duplicated column(s) {duplicated}")
        missing = [f.name for f in schema.feature if f.presence.min_fraction >= 1.0 and f.name not in columns]
        if missing:
            raise RawLogHeaderError(f"{file}: line 1 (header): required column(s) missing {missing}")
        parsers = tuple(field_parser(by_name[name], schema) for name in columns)
        return cls(file=file, columns=columns, parsers=parsers)

    def parse(self, line: str, line_number: int) -> ParsedRow | RejectedRow:
        def reject(reason: str) -> RejectedRow:
            return RejectedRow(self.file, line_number, reason, line)

        try:
            fields = _split_csv_line(line)
        except csv.Error as error:
            return reject(f"not valid CSV: {error}")
        if len(fields) != len(self.columns):
            return reject(f"has {len(fields)} fields, the header has {len(self.columns)}")
        row: ParsedRow = {}
        for parser, text in zip(self.parsers, fields, strict=True):
            try:
                values = parser(text)
            except ValueError as error:
                return reject(str(error))
            if values:
                row[parser.name] = values
        return row
