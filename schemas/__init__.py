"""Schemas (TFMD Schema text protos), one folder per artifact."""

from pathlib import Path

SCHEMAS_DIR = Path(__file__).resolve().parent
RAW_LOG_SCHEMA = SCHEMAS_DIR / "raw_log" / "schema.pbtxt"
