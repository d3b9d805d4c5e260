"""LogExampleGen: row validation, rejects with reasons, Examples per split (real Beam)."""

from __future__ import annotations

import glob
import json
import os

import pytest
import tensorflow as tf
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from watchnext.components.log_example_gen import RejectedRows
from watchnext.components.log_example_gen.component import default_output_config
from watchnext.components.log_example_gen.executor import (
    REJECTS_FILE_PREFIX,
    Executor,
    TooManyRejectedRows,
)
from watchnext.components.log_example_gen.raw_log import (
    RawLogHeaderError,
    RejectedRow,
    RowParser,
    load_raw_log_schema,
)
from watchnext.models import features
from watchnext.pipeline.data.raw_log_csv import RawLogCsvWriter

HEADER = ",".join(features.RAW_LOG_COLUMNS)


def good_row(user: int, **overrides) -> dict:
    row = {
        features.USER_ID: f"u{user}",
        features.ITEM_ID: f"v{user % 7}",
        features.REQUEST_ID: f"r{user}",
        features.TIMESTAMP: 1_700_000_000 + user,
        features.POSITION: 1 + user % 5,
        features.DEVICE: "ios",
        features.SURFACE: "feed",
        features.USER_FIRST_SEEN_TS: 1_690_000_000,
        features.ITEM_UPLOAD_TS: 1_680_000_000,
        features.ITEM_GENRES: ["comedy", "music"],
        features.ITEM_DURATION_S: 31.5,
        features.CLICK: user % 2,
        features.WATCH_TIME_S: 12.0 * (user % 2),
        features.LIKE: 0,
    }
    row.update(overrides)
    return row


def line_of(row: dict) -> str:
    from watchnext.pipeline.data.raw_log_csv import format_value

    return ",".join(format_value(row.get(name)) for name in features.RAW_LOG_COLUMNS)


@pytest.fixture(scope="module")
def parser() -> RowParser:
    return RowParser.from_header(load_raw_log_schema(), HEADER, "logs.csv")


def test_good_row_parses_with_types_and_missing_fields_absent(parser):
    row = parser.parse(line_of(good_row(3)), line_number=2)
    assert not isinstance(row, RejectedRow)
    assert row[features.USER_ID] == [b"u3"]
    assert row[features.TIMESTAMP] == [1_700_000_003]
    assert row[features.ITEM_GENRES] == [b"comedy", b"music"]
    assert row[features.ITEM_DURATION_S] == [31.5]
    assert features.RATING not in row and features.USER_AGE not in row


@pytest.mark.parametrize(
    ("overrides", "expected_reason"),
    [
        ({features.TIMESTAMP: "yesterday"}, "field 'timestamp': 'yesterday' is not an integer"),
        ({features.DEVICE: "fridge"}, "field 'device': 'fridge' is not one of"),
        ({features.CLICK: 2}, "field 'click': 2 is above the maximum 1"),
        ({features.POSITION: 0}, "field 'position': 0 is below the minimum 1"),
        ({features.USER_ID: ""}, "field 'user_id' is required but empty"),
        ({features.RATING: "nan"}, "field 'rating': 'nan' is not a finite number"),
    ],
)
def test_bad_field_is_rejected_with_a_reason_naming_it(parser, overrides, expected_reason):
    line = line_of(good_row(1, **overrides))
    rejected = parser.parse(line, line_number=9)
    assert isinstance(rejected, RejectedRow)
    assert expected_reason in rejected.reason
    assert (rejected.file, rejected.line_number, rejected.raw_line) == ("logs.csv", 9, line)


def test_wrong_column_count_is_rejected(parser):
    rejected = parser.parse("u1,v1,3", line_number=4)
    assert isinstance(rejected, RejectedRow)
    assert rejected.reason == f"has 3 fields, the header has {len(features.RAW_LOG_COLUMNS)}"


def test_header_without_a_required_column_refuses_the_file():
    columns = [c for c in features.RAW_LOG_COLUMNS if c != features.TIMESTAMP]
    with pytest.raises(RawLogHeaderError, match=r"x.csv: line 1 \(header\).*timestamp"):
        RowParser.from_header(load_raw_log_schema(), ",".join(columns), "x.csv")


def test_header_with_an_unknown_column_refuses_the_file():
    with pytest.raises(RawLogHeaderError, match="unknown column"):
        RowParser.from_header(load_raw_log_schema(), HEADER + ",colour", "x.csv")


def run_executor(input_dir: str, output_dir: str, max_rejected_fraction: float = 0.5):
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(output_dir, "examples")
    rejects = RejectedRows()
    rejects.uri = os.path.join(output_dir, "rejects")
    exec_properties = {
        "input_base": input_dir,
        "input_pattern": "*.csv",
        "input_fingerprint": "test",
        "output_config": proto_utils.proto_to_json(default_output_config()),
        "max_rejected_fraction": max_rejected_fraction,
    }
    Executor().Do({}, {"examples": [examples], "rejects": [rejects]}, exec_properties)
    return examples, rejects


def read_examples(examples, split: str) -> list[tf.train.Example]:
    pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*.gz")
    dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP")
    return [tf.train.Example.FromString(record.numpy()) for record in dataset]


def write_log_with_bad_rows(path: str, num_good: int) -> list[str]:
    with RawLogCsvWriter(path) as writer:
        writer.write_all(good_row(user) for user in range(num_good))
    bad_lines = [
        line_of(good_row(900)) + ",extra",  # wrong column count
        line_of(good_row(901, **{features.TIMESTAMP: "12:00"})),  # non-numeric timestamp
        line_of(good_row(902, **{features.DEVICE: "toaster"})),  # unknown enum
    ]
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(bad_lines) + "\n")
    return bad_lines


def test_executor_sets_bad_rows_aside_and_writes_the_rest(tmp_path):
    input_dir = tmp_path / "logs"
    input_dir.mkdir()
    bad_lines = write_log_with_bad_rows(str(input_dir / "day1.csv"), num_good=60)

    examples, rejects = run_executor(str(input_dir), str(tmp_path / "out"))

    rejected = [
        json.loads(line)
        for path in glob.glob(os.path.join(rejects.uri, REJECTS_FILE_PREFIX + "*.jsonl"))
        for line in open(path, encoding="utf-8")
    ]
    assert sorted(r["raw_line"] for r in rejected) == sorted(bad_lines)
    assert sorted(r["line_number"] for r in rejected) == [62, 63, 64]
    assert all(r["file"].endswith("day1.csv") for r in rejected)
    reasons = " | ".join(sorted(r["reason"] for r in rejected))
    assert "field 'timestamp'" in reasons and "field 'device'" in reasons and "fields" in reasons
    assert rejects.get_int_custom_property("rejected_rows") == 3
    assert rejects.get_int_custom_property("parsed_rows") == 60

    train, evaluation = read_examples(examples, "train"), read_examples(examples, "eval")
    assert len(train) + len(evaluation) == 60
    assert len(train) > len(evaluation) > 0
    train_users = {e.features.feature["user_id"].bytes_list.value[0] for e in train}
    eval_users = {e.features.feature["user_id"].bytes_list.value[0] for e in evaluation}
    assert not train_users & eval_users, "a user must not be in both splits"
    first = next(e for e in train + evaluation if e.features.feature["user_id"].bytes_list.value[0] == b"u3")
    assert first.features.feature["timestamp"].int64_list.value == [1_700_000_003]
    assert "rating" not in first.features.feature
    summary = json.load(open(os.path.join(rejects.uri, "summary.json")))
    assert summary["rejected_rows"] == 3


def test_executor_fails_when_too_many_rows_are_bad_but_keeps_them(tmp_path):
    input_dir = tmp_path / "logs"
    input_dir.mkdir()
    write_log_with_bad_rows(str(input_dir / "day1.csv"), num_good=5)

    with pytest.raises(TooManyRejectedRows, match="3 of 8 rows"):
        run_executor(str(input_dir), str(tmp_path / "out"), max_rejected_fraction=0.1)
    kept = glob.glob(str(tmp_path / "out" / "rejects" / (REJECTS_FILE_PREFIX + "*.jsonl")))
    assert sum(1 for path in kept for _ in open(path)) == 3


def test_split_config_is_respected():
    config = default_output_config()
    assert [s.name for s in config.split_config.splits] == ["train", "eval"]
    assert isinstance(config, example_gen_pb2.Output)


def test_requests_stay_whole_users_span_both_splits_and_rows_without_request_split_alone():
    from watchnext.components.log_example_gen.transforms import SplitByHash

    split = SplitByHash(default_output_config())
    rows = [
        {"user_id": [f"u{r % 5}"], "request_id": [f"r{r}"], "position": [p]}
        for r in range(300)
        for p in range(3)
    ]
    by_request: dict[str, set[int]] = {}
    by_user: dict[str, set[int]] = {}
    for row in rows:
        index = split(row, 2)
        by_request.setdefault(row["request_id"][0], set()).add(index)
        by_user.setdefault(row["user_id"][0], set()).add(index)
    assert all(len(indices) == 1 for indices in by_request.values())
    assert all(indices == {0, 1} for indices in by_user.values())
    train_share = sum(1 for r in rows if split(r, 2) == 0) / len(rows)
    assert 0.55 < train_share < 0.78
    no_request = [{"user_id": ["u1"], "timestamp": [t]} for t in range(200)]
    assert {split(row, 2) for row in no_request} == {0, 1}


@pytest.mark.parametrize("chunk_bytes", [7, 64, 1 << 20])
def test_chunks_keep_every_line_and_its_number(tmp_path, chunk_bytes):
    from watchnext.components.log_example_gen.transforms import plan_chunks, read_chunk

    path = tmp_path / "logs.csv"
    lines = [f"row{n},{'x' * (n % 13)}" for n in range(2, 60)]
    lines[10] = ""  # a blank line carries nothing but still counts
    path.write_text("header\n" + "\n".join(lines))  # no newline at the end
    got = [
        (number, raw.decode().rstrip("\n"))
        for chunk in plan_chunks(str(path), chunk_bytes)
        for _, number, raw in read_chunk(chunk)
    ]
    expected = [(number, text) for number, text in enumerate(lines, start=2) if text]
    assert got == expected


def test_compressed_files_are_read_whole(tmp_path):
    import gzip

    from watchnext.components.log_example_gen.transforms import plan_chunks, read_chunk

    path = tmp_path / "logs.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("header\na\nb\n")
    chunks = plan_chunks(str(path))
    assert len(chunks) == 1
    assert [(n, raw) for c in chunks for _, n, raw in read_chunk(c)] == [(2, b"a\n"), (3, b"b\n")]
