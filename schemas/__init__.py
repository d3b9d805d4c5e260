"""Schemas (TFMD Schema text protos), one folder per artifact."""

from pathlib import Path

SCHEMAS_DIR = Path(__file__).resolve().parent
RAW_LOG_SCHEMA = SCHEMAS_DIR / "raw_log" / "schema.pbtxt"
IMPRESSIONS_SCHEMA = SCHEMAS_DIR / "impressions" / "schema.pbtxt"
RETRIEVAL_SEQUENCES_SCHEMA = SCHEMAS_DIR / "retrieval_sequences" / "schema.pbtxt"
RANKING_SEQUENCES_SCHEMA = SCHEMAS_DIR / "ranking_sequences" / "schema.pbtxt"
