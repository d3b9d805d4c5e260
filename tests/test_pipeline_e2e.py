"""`watchnext run` end to end: real TFX components, MLMD, Beam and a loaded SavedModel."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from watchnext.components.log_example_gen.executor import REJECTS_FILE_PREFIX
from watchnext.models import features
from watchnext.pipeline import cli
from watchnext.pipeline.configs import HSTU_MODEL_NAME, RANKER_MODEL_NAME
from watchnext.pipeline.data import synthetic

RUN_ARGS = [
    "--rows", "6000", "--users", "150", "--train-steps", "60", "--hstu-train-steps", "20",
    "--beam-mode", "in_memory", "--workers", "1", "--min-click-auc", "0.55",
]  # fmt: skip


def pushed_version_dirs(out_dir, model: str = RANKER_MODEL_NAME) -> list[str]:
    base = os.path.join(out_dir, "serving", model)
    return sorted(os.listdir(base)) if os.path.isdir(base) else []


def serialized_example(user: str, item: str, device: str, position: int | None = None, **extra) -> bytes:
    def text(value: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))

    def number(value: float) -> tf.train.Feature:
        if isinstance(value, int):
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))

    feature = {
        features.USER_ID: text(user),
        features.ITEM_ID: text(item),
        features.DEVICE: text(device),
        features.SURFACE: text("feed"),
        features.ITEM_DURATION_S: number(20.0),
        features.USER_VIEW_COUNT: number(12),
        features.USER_VIEW_COUNT_BUCKET: number(3),
        features.USER_HOURS_SINCE_FIRST_SEEN: number(400.0),
        features.USER_IS_NEW: number(0),
        features.USER_RECENT_CLICK_RATE: number(0.2),
        features.ITEM_AGE_DAYS: number(3.5),
        features.ITEM_EXPOSURE_COUNT: number(250),
        features.ITEM_IS_NEW: number(0),
        features.HOUR_OF_DAY: number(20),
        **{name: number(value) for name, value in extra.items()},
    }
    if position is not None:
        feature[features.POSITION] = number(position)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def load_pushed_ranker(out_dir):
    versions = pushed_version_dirs(out_dir)
    assert len(versions) == 1
    return tf.saved_model.load(os.path.join(out_dir, "serving", RANKER_MODEL_NAME, versions[0]))


@pytest.fixture(scope="module")
def first_run_and_output(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("run")
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert cli.main(["run", "--out", str(out_dir), *RUN_ARGS]) == 0
    return out_dir, capture.getvalue()


@pytest.fixture(scope="module")
def first_run(first_run_and_output):
    return first_run_and_output[0]


def component_states(printed: str) -> dict[str, str]:
    rows = [line.split() for line in printed.splitlines()]
    return {row[0]: row[1] for row in rows if row[1:2] in (["ran"], ["cached"], ["FAILED"])}


def test_run_validates_impressions_and_sequences_against_their_schemas(first_run_and_output):
    _, printed = first_run_and_output
    for validator in ("ExampleValidator.impressions", "ExampleValidator.retrieval_sequences"):
        assert f"{validator}: no anomalies" in printed, printed


def test_every_component_ran_and_left_its_artifacts(first_run_and_output):
    out_dir, printed = first_run_and_output
    states = component_states(printed)
    expected = {
        "LogExampleGen", "FeatureGen", "SequenceGen", "Transform", "Trainer.ranker", "Evaluator.ranker",
        "Pusher.ranker", "StatisticsGen.impressions", "ExampleValidator.impressions", "Trainer.hstu",
        "Evaluator.hstu", "Pusher.hstu",
    }  # fmt: skip
    assert expected <= set(states), printed
    assert all(state == "ran" for state in states.values()), printed
    outputs = {
        "FeatureGen": "impressions", "SequenceGen": "retrieval_sequences", "Transform": "transform_graph",
        "Trainer.ranker": "model", "Evaluator.ranker": "evaluation", "Pusher.ranker": "pushed_model",
        "Trainer.hstu": "model", "Evaluator.hstu": "evaluation", "Pusher.hstu": "pushed_model",
    }  # fmt: skip
    for component, output in outputs.items():
        found = glob.glob(os.path.join(out_dir, "tfx", component, output, "*", "*"))
        assert found, f"{component}.{output} is empty"


def test_evaluation_has_a_row_per_cohort_slice_and_blesses_the_ranker(first_run, capsys):
    from watchnext.pipeline import eval_report

    evaluation = glob.glob(os.path.join(first_run, "tfx", "Evaluator.ranker", "evaluation", "*"))[0]
    rows = {row.name: row.values for row in eval_report.slice_rows(evaluation)}
    cohorts = {f"{features.USER_COHORT}={cohort}" for cohort in features.USER_COHORTS}
    assert {"overall", *cohorts} <= set(rows), sorted(rows)
    assert any(name.startswith(f"{features.DEVICE}=") for name in rows)
    assert rows["overall"]["click AUC"] >= 0.55
    assert sum(rows[c]["examples"] for c in cohorts) == rows["overall"]["examples"]
    assert eval_report.blessing(str(first_run), "Evaluator.ranker") == "BLESSED"
    assert cli.main(["eval-report", str(first_run)]) == 0
    printed = capsys.readouterr().out
    assert "ranker: BLESSED" in printed and f"{features.USER_COHORT}=new" in printed, printed


def test_run_pushes_a_ranker_that_loads_and_scores(first_run):
    serve = load_pushed_ranker(first_run).signatures["serving_default"]
    batch = tf.constant([serialized_example("u1", "v2", "ios"), serialized_example("zz", "new", "tv")])
    outputs = serve(examples=batch)
    for name in ("click_probability", "like_probability"):
        values = outputs[name].numpy()
        assert values.shape == (2,) and ((values > 0) & (values < 1)).all(), name
    assert outputs["score"].numpy().shape == (2,)
    assert (outputs["watch_time_s"].numpy() >= 0).all()


def test_exported_scores_ignore_position_present_absent_or_different(first_run):
    model = load_pushed_ranker(first_run)
    serve = model.signatures["serving_default"]
    users, items = ["u1", "u7", "nobody"], ["v3", "v11", "unseen"]
    variants = [None, 1, 2, 9, 50]
    scores = []
    for position in variants:
        batch = [serialized_example(u, i, "android", position) for u in users for i in items]
        scores.append(serve(examples=tf.constant(batch))["score"].numpy())
    for position, other in zip(variants[1:], scores[1:], strict=True):
        np.testing.assert_array_equal(scores[0], other, err_msg=f"position={position}")
    assert np.ptp(scores[0]) > 0, "scores should differ between users/items"


def test_predict_signature_takes_raw_features_and_matches_serving_default(first_run):
    model = load_pushed_ranker(first_run)
    predict = model.signatures["predict"]
    assert features.POSITION not in predict.structured_input_signature[1]
    request = {
        features.USER_ID: tf.constant(["u1", "zz"]),
        features.ITEM_ID: tf.constant(["v2", "new"]),
        features.ITEM_GENRES: tf.constant(["", ""]),
        features.DEVICE: tf.constant(["ios", "tv"]),
        features.SURFACE: tf.constant(["feed", "feed"]),
        features.ITEM_DURATION_S: tf.constant([20.0, 20.0]),
        features.USER_VIEW_COUNT: tf.constant([12, 12], tf.int64),
        features.USER_VIEW_COUNT_BUCKET: tf.constant([3, 3], tf.int64),
        features.USER_HOURS_SINCE_FIRST_SEEN: tf.constant([400.0, 400.0]),
        features.USER_IS_NEW: tf.constant([0, 0], tf.int64),
        features.USER_RECENT_CLICK_RATE: tf.constant([0.2, 0.2]),
        features.ITEM_AGE_DAYS: tf.constant([3.5, 3.5]),
        features.ITEM_EXPOSURE_COUNT: tf.constant([250, 250], tf.int64),
        features.ITEM_IS_NEW: tf.constant([0, 0], tf.int64),
        features.HOUR_OF_DAY: tf.constant([20, 20], tf.int64),
    }
    from_features = predict(**request)["score"].numpy()
    batch = tf.constant([serialized_example("u1", "v2", "ios", 3), serialized_example("zz", "new", "tv")])
    from_examples = model.signatures["serving_default"](examples=batch)["score"].numpy()
    np.testing.assert_allclose(from_features, from_examples, rtol=1e-6)


def test_hstu_is_evaluated_with_hit_rates_and_pushed_with_its_signatures(first_run):
    from watchnext.pipeline import eval_report

    evaluation = glob.glob(os.path.join(first_run, "tfx", "Evaluator.hstu", "evaluation", "*"))[0]
    (overall,) = [row for row in eval_report.slice_rows(evaluation) if row.name == "overall"]
    for k in (10, 50, 200):
        assert 0.0 <= overall.values[f"HR@{k}"] <= 1.0 and 0.0 <= overall.values[f"NDCG@{k}"] <= 1.0
    assert overall.values["HR@10"] <= overall.values["HR@50"] <= overall.values["HR@200"]
    (version,) = pushed_version_dirs(first_run, HSTU_MODEL_NAME)
    model = tf.saved_model.load(os.path.join(first_run, "serving", HSTU_MODEL_NAME, version))
    assert {"serving_default", "retrieve", "score_candidates"} <= set(model.signatures)
    top = model.signatures["retrieve"](history_item_ids=tf.constant([["v1", "v2", ""]]), k=tf.constant(7))
    assert top["item_ids"].shape == (1, 7)
    assert (np.diff(top["scores"].numpy()[0]) <= 0).all()


def test_second_run_reuses_every_component_and_pushes_nothing_new(first_run, capsys):
    capsys.readouterr()
    assert cli.main(["run", "--out", str(first_run), *RUN_ARGS]) == 0
    states = component_states(capsys.readouterr().out)
    # The resolver resolves again and finds the model the first run blessed; the Evaluator then
    # runs again against that baseline (the same model), and the Pusher finds it already pushed.
    reevaluated = {
        f"{step}.{model}" for step in ("LastBlessed", "Evaluator", "Pusher") for model in ("ranker", "hstu")
    }
    assert all(state == "cached" for name, state in states.items() if name not in reevaluated), states
    assert len(pushed_version_dirs(first_run)) == 1, "the same model must not be pushed twice"
    assert len(pushed_version_dirs(first_run, HSTU_MODEL_NAME)) == 1


def test_a_broken_model_is_neither_blessed_nor_pushed(first_run):
    from watchnext.pipeline import local_runner
    from watchnext.pipeline.configs import EvaluationConfig, PipelineConfig

    data_dir = glob.glob(os.path.join(first_run, "data", "synthetic-*"))[0]
    config = PipelineConfig(
        data_dir=data_dir,
        input_pattern=synthetic.LOGS_FILE,
        output_dir=str(first_run),
        train_steps=60,
        beam_direct_running_mode="in_memory",
        beam_workers=1,
        ranker_run_fn="broken_ranker.run_fn",
        evaluation=EvaluationConfig(min_click_auc=0.55),
    )
    before = pushed_version_dirs(first_run)
    report = local_runner.run(config)
    states = {c.component: c.state for c in report.components}
    assert states["Trainer.ranker"] == "ran" and states["Evaluator.ranker"] == "ran", states
    assert eval_report_blessing(first_run) == "NOT BLESSED"
    assert pushed_version_dirs(first_run) == before


def eval_report_blessing(run_dir) -> str:
    from watchnext.pipeline import eval_report

    return eval_report.blessing(str(run_dir), "Evaluator.ranker")


def test_malformed_rows_are_counted_reported_and_kept(tmp_path, capsys):
    logs = synthetic.generate(synthetic.SyntheticConfig(seed=3, num_requests=200), tmp_path / "logs")
    bad_lines = ["u1,v1,too,few,columns", "not,a,valid,row"]
    with open(logs.logs_path, "a", encoding="utf-8") as handle:
        handle.write("\n".join(bad_lines) + "\n")
    out_dir = tmp_path / "out"

    args = ["run", "--logs", str(tmp_path / "logs"), "--input-pattern", synthetic.LOGS_FILE]
    # Quality is not the point here (2,000 rows): bless whatever trains.
    assert cli.main([*args, "--out", str(out_dir), *RUN_ARGS, "--min-click-auc", "0"]) == 0

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
    for command in ("run", "eval-report", "generate", "convert-movielens"):
        assert command in printed


def test_unusable_header_fails_the_run_with_a_message_naming_the_file(tmp_path, capsys):
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    (logs_dir / "day1.csv").write_text("user_id,item_id\nu1,v1\n")

    exit_code = cli.main(["run", "--logs", str(logs_dir), "--out", str(tmp_path / "out"), *RUN_ARGS])

    assert exit_code == 1
    assert "day1.csv: line 1 (header): required column(s) missing" in capsys.readouterr().err


def test_a_killed_run_resumes_from_the_cache_and_finishes(tmp_path):
    out_dir = tmp_path / "out"
    entry = "import sys; from watchnext.pipeline.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", entry, "run", "--out", str(out_dir), *RUN_ARGS]
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    transform_started = out_dir / "tfx" / "Transform"
    deadline = time.monotonic() + 900
    while not transform_started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not pushed_version_dirs(out_dir)
    impressions = sorted(glob.glob(os.path.join(out_dir, "tfx", "FeatureGen", "impressions", "*")))

    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert cli.main(["run", "--out", str(out_dir), *RUN_ARGS]) == 0
    states = component_states(capture.getvalue())
    for finished in ("LogExampleGen", "FeatureGen", "SequenceGen"):
        assert states[finished] == "cached", capture.getvalue()
    for unfinished in ("Transform", "Trainer.ranker", "Evaluator.ranker", "Pusher.ranker"):
        assert states[unfinished] == "ran", capture.getvalue()
    assert sorted(glob.glob(os.path.join(out_dir, "tfx", "FeatureGen", "impressions", "*"))) == impressions
    assert len(pushed_version_dirs(out_dir)) == 1
