"""`watchnext run` end to end: real TFX components, MLMD, Beam and a loaded SavedModel."""

from __future__ import annotations

import os

import pytest
import tensorflow as tf

from watchnext.components.log_example_gen.executor import REJECTS_FILE_PREFIX
from watchnext.models import features
from watchnext.pipeline import cli
from watchnext.pipeline.data import synthetic

RUN_ARGS = ["--rows", "3000", "--train-steps", "20", "--beam-mode", "in_memory", "--workers", "1"]


def pushed_version_dirs(out_dir) -> list[str]:
    base = os.path.join(out_dir, "serving", "baseline")
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


def serialized_example(user: str, item: str, device: str) -> bytes:
    def text(value: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))

    feature = {
        features.USER_ID: text(user),
        features.ITEM_ID: text(item),
        features.DEVICE: text(device),
        features.SURFACE: text("feed"),
        features.ITEM_DURATION_S: tf.train.Feature(float_list=tf.train.FloatList(value=[20.0])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("run")
    assert cli.main(["run", "--out", str(out_dir), *RUN_ARGS]) == 0
    return out_dir


def test_run_validates_impressions_and_sequences_against_their_schemas(first_run, capsys):
    assert cli.main(["run", "--out", str(first_run), *RUN_ARGS]) == 0
    printed = capsys.readouterr().out
    for validator in ("ExampleValidator.impressions", "ExampleValidator.retrieval_sequences"):
        assert f"{validator}: no anomalies" in printed, printed


def test_run_pushes_a_savedmodel_that_loads_and_scores(first_run, capsys):
    versions = pushed_version_dirs(first_run)
    assert len(versions) == 1
    model = tf.saved_model.load(os.path.join(first_run, "serving", "baseline", versions[0]))
    serve = model.signatures["serving_default"]
    batch = tf.constant([serialized_example("u1", "v2", "ios"), serialized_example("zz", "new", "tv")])
    scores = serve(examples=batch)["click_probability"].numpy()
    assert scores.shape == (2,)
    assert ((scores > 0) & (scores < 1)).all()


def test_second_run_reuses_every_component_from_the_cache(first_run, capsys):
    capsys.readouterr()
    assert cli.main(["run", "--out", str(first_run), *RUN_ARGS]) == 0
    printed = capsys.readouterr().out
    table = [line.split() for line in printed.splitlines() if line.split()[1:2] in (["ran"], ["cached"])]
    assert len(table) == 11, printed
    assert all(state == "cached" for _, state, _ in table), printed
    assert len(pushed_version_dirs(first_run)) == 1, "a cached run must not push again"


def test_malformed_rows_are_counted_reported_and_kept(tmp_path, capsys):
    logs = synthetic.generate(synthetic.SyntheticConfig(seed=3, num_requests=200), tmp_path / "logs")
    bad_lines = ["u1,v1,too,few,columns", "not,a,valid,row"]
    with open(logs.logs_path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(bad_lines) + "\n")
    out_dir = tmp_path / "out"

    args = ["run", "--logs", str(tmp_path / "logs"), "--input-pattern", synthetic.LOGS_FILE]
    assert cli.main([*args, "--out", str(out_dir), *RUN_ARGS]) == 0

    printed = capsys.readouterr().out
    assert "rejected raw rows: 2" in printed
    rejects_dir = printed.split("rejected raw rows: 2 (reasons in ")[1].split(")")[0]
    kept = [
        line
        for name in os.listdir(rejects_dir)
        if name.startswith(REJECTS_FILE_PREFIX)
        for line in open(os.path.join(rejects_dir, name), encoding="utf-8")
    ]
    assert len(kept) == 2 and all('"reason": "has' in line for line in kept)
    assert len(pushed_version_dirs(out_dir)) == 1, "the run continues past bad rows"


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    printed = capsys.readouterr().out
    for command in ("run", "generate", "convert-movielens"):
        assert command in printed


def test_unusable_header_fails_the_run_with_a_message_naming_the_file(tmp_path, capsys):
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    (logs_dir / "day1.csv").write_text("user_id,item_id\nu1,v1\n")

    exit_code = cli.main(["run", "--logs", str(logs_dir), "--out", str(tmp_path / "out"), *RUN_ARGS])

    assert exit_code == 1
    assert "day1.csv: line 1 (header): required column(s) missing" in capsys.readouterr().err
