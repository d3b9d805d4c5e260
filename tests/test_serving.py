"""The TF Serving-compatible REST server (serving/): answers, errors, version swaps, clients, CLI.

Servers run on loopback in a thread (free port) over small SavedModels built here
(`serving/toy_ranker.py`: the ranker's `serving_default` / `predict` signatures, an OOV
vocabulary table); answers are compared with the same SavedModel called in-process.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
import tensorflow as tf

from watchnext.serving import cli_commands, client, rest_api, toy_ranker
from watchnext.serving.model_registry import ModelRegistry
from watchnext.serving.rest_api import IGNORED_INPUTS_HEADER
from watchnext.serving.saved_model_version import load_version
from watchnext.serving.server import start_in_thread

OUTPUTS = toy_ranker.OUTPUT_NAMES


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Two toy rankers (versions differ by their bias), exported once for the module."""
    root = tmp_path_factory.mktemp("exports")
    return {
        "v1": toy_ranker.export_toy_ranker(str(root / "v1"), bias=0.0),
        "v2": toy_ranker.export_toy_ranker(str(root / "v2"), bias=1.0),
    }


@pytest.fixture(scope="module")
def reference(exports):
    """The v1 SavedModel loaded in-process."""
    return tf.saved_model.load(exports["v1"])


def push(source: str, model_dir: str, version: int) -> str:
    """Copies a SavedModel in as the pipeline's AtomicPusher does: hidden staging copy, then rename."""
    os.makedirs(model_dir, exist_ok=True)
    staging = os.path.join(model_dir, f".incoming-{version}-test")
    shutil.copytree(source, staging)
    target = os.path.join(model_dir, str(version))
    os.rename(staging, target)
    return target


@pytest.fixture(scope="module")
def server(exports, tmp_path_factory):
    """A server over two models (ranker v1 and a copy named other), plus directories it must ignore."""
    base = tmp_path_factory.mktemp("serving")
    push(exports["v1"], str(base / "ranker"), 1)
    push(exports["v1"], str(base / "other"), 7)
    shutil.copytree(exports["v2"], base / "ranker" / ".incoming-9-abcd")  # a push in progress
    (base / "ranker" / "notes").mkdir()  # not a version
    (base / "ranker" / "notes" / "saved_model.pb").write_bytes(b"garbage")
    running = start_in_thread(ModelRegistry(str(base), poll_seconds=0))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def columns(rows: list[dict]) -> dict[str, list]:
    return {name: [row[name] for row in rows] for name in rows[0]}


def in_process_predict(model, rows: list[dict]) -> dict[str, np.ndarray]:
    tensors = {
        name: tf.constant([row[name] for row in rows], toy_ranker.FEATURE_DTYPES[name])
        for name in toy_ranker.FEATURE_NAMES
    }
    return {k: v.numpy() for k, v in model.signatures["predict"](**tensors).items()}


def tf_example(features: dict) -> bytes:
    feature = {}
    for name, value in features.items():
        if isinstance(value, str):
            feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif isinstance(value, float):
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        else:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


def assert_equal_outputs(answer_rows: list[dict], expected: dict[str, np.ndarray]) -> None:
    for name in OUTPUTS:
        got = np.array([row[name] for row in answer_rows], dtype=np.float32)
        np.testing.assert_array_equal(got, expected[name], err_msg=name)


# --- status, metadata, 404 -------------------------------------------------------------------


def test_status_metadata_and_not_found(http):
    status = http.get("/v1/models/ranker")
    assert status.status_code == 200
    assert status.json() == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }  # .incoming-9-* and notes/ are not versions
    assert http.get("/v1/models/ranker/versions/1").json()["model_version_status"][0]["version"] == "1"
    assert http.get("/v1/models/other").json()["model_version_status"][0]["version"] == "7"

    metadata = http.get("/v1/models/ranker/metadata").json()
    assert metadata["model_spec"] == {"name": "ranker", "signature_name": "", "version": "1"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert sorted(signatures) == ["predict", "serving_default"]
    examples = signatures["serving_default"]["inputs"]["examples"]
    assert examples["dtype"] == "DT_STRING" and examples["tensor_shape"] == {"dim": [{"size": "-1"}]}
    predict = signatures["predict"]
    assert (
        sorted(predict["inputs"]) == sorted(toy_ranker.FEATURE_NAMES) and "position" not in predict["inputs"]
    )
    assert predict["inputs"]["hour_of_day"]["dtype"] == "DT_INT64"
    assert predict["inputs"]["item_age_days"]["dtype"] == "DT_FLOAT"
    assert sorted(predict["outputs"]) == sorted(OUTPUTS)
    assert predict["method_name"] == "tensorflow/serving/predict"
    assert http.get("/v1/models/ranker/versions/1/metadata").json() == metadata

    body = {"instances": [b64(tf_example({}))]}
    for method, path, expected in [
        ("GET", "/v1/models/nope", "Could not find any versions of model nope"),
        ("GET", "/v1/models/ranker/versions/3", "Could not find version 3 of model ranker"),
        ("GET", "/v1/models/nope/metadata", "Servable not found for request: Latest(nope)"),
        ("POST", "/v1/models/nope:predict", "Servable not found for request: Latest(nope)"),
        (
            "POST",
            "/v1/models/ranker/versions/3:predict",
            "Servable not found for request: Specific(ranker, 3)",
        ),
        ("POST", "/v1/models/ranker/versions/9:regress", "Specific(ranker, 9)"),
        ("GET", "/v1/models/ranker/labels/stable", "label"),
        ("GET", "/v2/anything", "Not Found"),
    ]:
        response = http.request(method, path, json=body if method == "POST" else None)
        assert response.status_code == 404, (path, response.text)
        assert expected in response.json()["error"], (path, response.text)


# --- predict ---------------------------------------------------------------------------------


def test_predict_row_and_columnar_equal_in_process(http, reference):
    rows = toy_ranker.candidate_features(100)
    expected = in_process_predict(reference, rows)

    row = http.post("/v1/models/ranker:predict", json={"signature_name": "predict", "instances": rows})
    assert row.status_code == 200, row.text
    assert IGNORED_INPUTS_HEADER.lower() not in row.headers
    assert_equal_outputs(row.json()["predictions"], expected)

    col = http.post(
        "/v1/models/ranker/versions/1:predict", json={"signature_name": "predict", "inputs": columns(rows)}
    )
    assert col.status_code == 200, col.text
    outputs = col.json()["outputs"]
    assert sorted(outputs) == sorted(OUTPUTS)
    for name in OUTPUTS:
        np.testing.assert_array_equal(np.array(outputs[name], np.float32), expected[name])

    other = http.post("/v1/models/other:predict", json={"signature_name": "predict", "instances": rows[:3]})
    assert_equal_outputs(other.json()["predictions"], in_process_predict(reference, rows[:3]))


def test_b64_serialized_examples_equal_in_process(http, reference):
    rows = toy_ranker.candidate_features(5)
    serialized = [tf_example(row) for row in rows]
    expected = {k: v.numpy() for k, v in reference.signatures["serving_default"](examples=serialized).items()}
    np.testing.assert_allclose(expected["score"], in_process_predict(reference, rows)["score"], rtol=1e-6)

    row = http.post("/v1/models/ranker:predict", json={"instances": [b64(s) for s in serialized]})
    assert row.status_code == 200, row.text
    assert_equal_outputs(row.json()["predictions"], expected)
    named = http.post(
        "/v1/models/ranker:predict", json={"instances": [{"examples": b64(s)} for s in serialized]}
    )
    assert named.json() == row.json()
    col = http.post(
        "/v1/models/ranker:predict",
        json={"signature_name": "serving_default", "inputs": {"examples": [b64(s) for s in serialized]}},
    )
    assert col.status_code == 200, col.text
    np.testing.assert_array_equal(np.array(col.json()["outputs"]["score"], np.float32), expected["score"])


def test_position_changes_nothing_and_is_reported(http, caplog, monkeypatch):
    monkeypatch.setattr(rest_api, "_logged_ignored", set())  # each dropped name is logged once
    rows = toy_ranker.candidate_features(20)
    plain = http.post("/v1/models/ranker:predict", json={"signature_name": "predict", "instances": rows})
    with caplog.at_level(logging.INFO):
        for positions in ([1] * 20, list(range(1, 21)), [500] * 20):
            with_position = [{**row, "position": p} for row, p in zip(rows, positions, strict=True)]
            answer = http.post(
                "/v1/models/ranker:predict", json={"signature_name": "predict", "instances": with_position}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json() == plain.json()
            assert answer.headers[IGNORED_INPUTS_HEADER] == "position"
    assert any("ignoring request input(s) position" in r.getMessage() for r in caplog.records)

    cols = {**columns(rows), "position": list(range(20)), "some_future_feature": ["x"] * 20}
    answer = http.post("/v1/models/ranker:predict", json={"signature_name": "predict", "inputs": cols})
    assert answer.headers[IGNORED_INPUTS_HEADER] == "position,some_future_feature"
    assert answer.json()["outputs"]["score"] == [p["score"] for p in plain.json()["predictions"]]

    # Serialized examples: the model's parse spec never reads position.
    without = [b64(tf_example(row)) for row in rows]
    with_pos = [b64(tf_example({**row, "position": i + 1})) for i, row in enumerate(rows)]
    a = http.post("/v1/models/ranker:predict", json={"instances": without}).json()
    b = http.post("/v1/models/ranker:predict", json={"instances": with_pos}).json()
    assert a == b


def test_unknown_ids_and_feature_values_give_valid_scores(http):
    base_row = toy_ranker.candidate_features(1)[0]
    strange = [
        {**base_row, "user_id": "never-seen-user"},
        {**base_row, "user_id": "another-unknown"},
        {**base_row, "item_id": "brand-new-item", "item_genres": "Unheard-of|Genres"},
        {**base_row, "device": "smart-fridge", "surface": "", "hour_of_day": 99},
        {**base_row, "item_exposure_count": 10**12, "item_age_days": -5.0, "user_recent_click_rate": 7.5},
        {name: "" if dtype == tf.string else 0 for name, dtype in toy_ranker.FEATURE_DTYPES.items()},
    ]
    answer = http.post("/v1/models/ranker:predict", json={"signature_name": "predict", "instances": strange})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    for p in predictions:
        assert all(math.isfinite(p[name]) for name in OUTPUTS), p
        assert 0.0 <= p["click_probability"] <= 1.0
    # Both unknown users fall in the one OOV bucket: same embedding, same scores.
    assert predictions[0] == predictions[1]
    examples = [{"user_id": "ghost", "item_id": "nothing", "device": "vr"}, {}]
    regress = http.post("/v1/models/ranker:regress", json={"examples": examples})
    assert regress.status_code == 200 and all(math.isfinite(v) for v in regress.json()["results"])


@pytest.mark.parametrize(
    "change, field",
    [
        ({"hour_of_day": "seven"}, "hour_of_day"),
        ({"hour_of_day": 7.5}, "hour_of_day"),
        ({"user_is_new": True}, "user_is_new"),
        ({"item_age_days": "old"}, "item_age_days"),
        ({"user_id": 42}, "user_id"),
        ({"item_id": None}, "item_id"),
        ({"item_id": ["i1", "i2"]}, "item_id"),
        ({"user_view_count": 2**70}, "user_view_count"),
        ({"item_duration_s": 1e300}, "item_duration_s"),
        ({"device": {"b64": "%%%not base64"}}, "device"),
        ({"user_id": "DELETE"}, "user_id"),
    ],
)
def test_wrong_type_or_shape_is_400_naming_the_field(http, change, field):
    rows = toy_ranker.candidate_features(3)
    bad = {**rows[1], **change}
    if change.get("user_id") == "DELETE":
        del bad["user_id"]
    answer = http.post(
        "/v1/models/ranker:predict", json={"signature_name": "predict", "instances": [rows[0], bad, rows[2]]}
    )
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["error"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"signature_name": "predict", "inputs": {"user_id": [["u1"]]}}, "missing input"),
        ({"signature_name": "predict", "inputs": "u1"}, "takes 15 inputs"),
        ({"signature_name": "predict", "instances": [["u1"]]}, "send a list of objects"),
        ({"signature_name": "predict", "instances": []}, "instances"),
        ({"signature_name": "predict", "instances": {"user_id": "u1"}}, "instances"),
        ({"signature_name": "nope", "instances": [{}]}, "nope"),
        ({"signature_name": 3, "instances": [{}]}, "signature_name"),
        ({"instances": [{"b64": "AAA="}], "inputs": {}}, "only one of"),
        ({"instances": [1.5]}, "examples"),
        ({"inputs": [[{"b64": "AAA="}]]}, "examples"),
        ({"inputs": [{"b64": "AAA="}, ["x"]]}, "examples"),
        ({"instances": [{"b64": "bm90IGFuIGV4YW1wbGU="}]}, "parse example"),  # not a tf.Example
        ([1, 2], "JSON object"),
    ],
)
def test_malformed_predict_requests_are_400(http, body, field):
    answer = http.post("/v1/models/ranker:predict", json=body)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["error"]


def test_columnar_inputs_of_different_lengths_and_bad_json_are_400(http):
    cols = columns(toy_ranker.candidate_features(4))
    cols["item_id"] = cols["item_id"][:2]
    answer = http.post("/v1/models/ranker:predict", json={"signature_name": "predict", "inputs": cols})
    assert answer.status_code == 400 and answer.json()["error"], answer.text
    answer = http.post("/v1/models/ranker:predict", content=b"{not json")
    assert answer.status_code == 400 and "JSON Parse error" in answer.json()["error"]
    answer = http.post("/v1/models/ranker:explain", json={})
    assert answer.status_code == 400 and "Malformed request" in answer.json()["error"]


# --- classify / regress ----------------------------------------------------------------------


def test_classify_and_regress_on_the_examples_signature(http, reference):
    rows = toy_ranker.candidate_features(4)
    context_names = ("user_id", "device", "user_view_count")
    context = {name: rows[0][name] for name in context_names}
    examples = [{k: v for k, v in row.items() if k not in context_names} for row in rows]
    for row in rows:
        row.update(context)
    expected = {
        k: v.numpy()
        for k, v in reference.signatures["serving_default"](examples=[tf_example(r) for r in rows]).items()
    }

    regress = http.post("/v1/models/ranker:regress", json={"context": context, "examples": examples})
    assert regress.status_code == 200, regress.text
    np.testing.assert_array_equal(np.array(regress.json()["results"], np.float32), expected["score"])

    classify = http.post(
        "/v1/models/ranker:classify",
        json={"signature_name": "serving_default", "context": context, "examples": examples},
    )
    assert classify.status_code == 200, classify.text
    results = classify.json()["results"]
    assert len(results) == 4
    for i, pairs in enumerate(results):
        assert [label for label, _ in pairs] == sorted(OUTPUTS)
        for label, value in pairs:
            assert np.float32(value) == expected[label][i]

    # An example's own feature wins over the context's.
    own = http.post(
        "/v1/models/ranker:regress", json={"context": {"user_id": "u1"}, "examples": [{"user_id": "u2"}]}
    ).json()
    plain = http.post("/v1/models/ranker:regress", json={"examples": [{"user_id": "u2"}]}).json()
    assert own == plain


@pytest.mark.parametrize(
    "verb, body, field",
    [
        ("regress", {"examples": [{"item_age_days": 3}]}, "item_age_days"),  # int64 for a float feature
        ("regress", {"examples": [{"item_id": 5}]}, "item_id"),
        ("regress", {"examples": [{"item_age_days": [1, 2.5]}]}, "item_age_days"),
        ("classify", {"examples": [{"item_id": None}]}, "item_id"),
        ("classify", {"examples": [{"item_id": {"nested": 1}}]}, "item_id"),
        ("classify", {"examples": "x"}, "examples"),
        ("classify", {"examples": []}, "examples"),
        ("regress", {"context": [1], "examples": [{}]}, "context"),
        ("regress", {"instances": [{}]}, "examples"),
        ("regress", {"signature_name": "predict", "examples": [{}]}, "predict"),
    ],
)
def test_bad_classify_and_regress_requests_are_400(http, verb, body, field):
    answer = http.post(f"/v1/models/ranker:{verb}", json=body)
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["error"]


# --- version management ----------------------------------------------------------------------


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def states(http_client, model: str = "ranker") -> dict[str, str]:
    response = http_client.get(f"/v1/models/{model}")
    return {s["version"]: s["state"] for s in response.json().get("model_version_status", [])}


def test_new_version_is_picked_up_while_the_old_keeps_answering(exports, reference, tmp_path):
    model_dir = str(tmp_path / "serving" / "ranker")
    push(exports["v1"], model_dir, 1)
    gate, loading = threading.Event(), threading.Event()
    warmed = []

    def slow_loader(name, version, path):
        if version == 2:
            loading.set()
            assert gate.wait(60), "test never released the load"
        loaded = load_version(name, version, path)  # warms up before returning
        warmed.append(version)
        return loaded

    registry = ModelRegistry(str(tmp_path / "serving"), poll_seconds=0.05, num_versions=2, loader=slow_loader)
    running = start_in_thread(registry)
    rows = toy_ranker.candidate_features(10)
    v1_scores = in_process_predict(reference, rows)["score"]
    body = {"signature_name": "predict", "instances": rows}
    try:
        with httpx.Client(base_url=running.url, timeout=30) as http:

            def scores(path="/v1/models/ranker:predict"):
                answer = http.post(path, json=body)
                assert answer.status_code == 200, answer.text
                return np.array([p["score"] for p in answer.json()["predictions"]], np.float32)

            np.testing.assert_array_equal(scores(), v1_scores)
            push(exports["v2"], model_dir, 2)
            assert loading.wait(30), "version 2 was never picked up"
            assert states(http) == {"2": "LOADING", "1": "AVAILABLE"}
            assert http.get("/v1/models/ranker/metadata").json()["model_spec"]["version"] == "1"
            assert http.post("/v1/models/ranker/versions/2:predict", json=body).status_code == 404

            # While version 2 loads, version 1 answers every request, also concurrent ones.
            failures, answers = [], []

            def hammer():
                for _ in range(5):
                    try:
                        answers.append(scores())
                    except AssertionError as error:
                        failures.append(error)

            threads = [threading.Thread(target=hammer) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert not failures and len(answers) == 20
            for answer in answers:
                np.testing.assert_array_equal(answer, v1_scores)
            assert 2 not in warmed

            gate.set()
            wait_for(lambda: states(http).get("2") == "AVAILABLE", what="version 2 available")
            assert warmed == [1, 2]
            v2_scores = scores()
            assert not np.array_equal(v2_scores, v1_scores)
            np.testing.assert_array_equal(scores("/v1/models/ranker/versions/2:predict"), v2_scores)
            np.testing.assert_array_equal(scores("/v1/models/ranker/versions/1:predict"), v1_scores)
            assert http.get("/v1/models/ranker/metadata").json()["model_spec"]["version"] == "2"

            # A third good version (num_versions=2): 3 serves, 2 stays, 1 is unloaded.
            push(exports["v1"], model_dir, 3)
            wait_for(lambda: states(http).get("1") == "END", what="version 1 unloaded")
            assert states(http) == {"3": "AVAILABLE", "2": "AVAILABLE", "1": "END"}
            np.testing.assert_array_equal(scores(), v1_scores)
            assert http.post("/v1/models/ranker/versions/1:predict", json=body).status_code == 404
    finally:
        gate.set()
        running.stop()


def write_warmup_file(version_dir: str, inputs: dict[str, np.ndarray], signature: str) -> None:
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
    os.makedirs(os.path.join(version_dir, "assets.extra"), exist_ok=True)
    with tf.io.TFRecordWriter(
        os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests")
    ) as writer:
        writer.write(log.SerializeToString())


def test_corrupt_or_incomplete_versions_are_refused_and_the_last_good_keeps_serving(
    exports, reference, tmp_path, caplog
):
    base = tmp_path / "serving"
    model_dir = str(base / "ranker")
    push(exports["v1"], model_dir, 1)
    registry = ModelRegistry(str(base), poll_seconds=0.05)
    running = start_in_thread(registry)
    rows = toy_ranker.candidate_features(5)
    v1_scores = in_process_predict(reference, rows)["score"]
    body = {"signature_name": "predict", "instances": rows}
    try:
        with httpx.Client(base_url=running.url, timeout=30) as http, caplog.at_level(logging.ERROR):

            def served_scores():
                answer = http.post("/v1/models/ranker:predict", json=body)
                assert answer.status_code == 200, answer.text
                return np.array([p["score"] for p in answer.json()["predictions"]], np.float32)

            staging = tmp_path / "corrupt"
            shutil.copytree(exports["v2"], staging)
            (staging / "saved_model.pb").write_bytes(b"\x00garbage, not a SavedModel\xff" * 10)
            push(str(staging), model_dir, 2)
            incomplete = tmp_path / "incomplete"
            shutil.copytree(os.path.join(exports["v2"], "variables"), incomplete / "variables")
            push(str(incomplete), model_dir, 3)
            bad_warmup = tmp_path / "bad_warmup"
            shutil.copytree(exports["v2"], bad_warmup)
            write_warmup_file(str(bad_warmup), {"user_id": np.array([b"u1"])}, "predict")  # 14 inputs missing
            push(str(bad_warmup), model_dir, 4)

            wait_for(lambda: all(states(http).get(v) == "END" for v in "234"), what="versions 2-4 refused")
            status = {s["version"]: s for s in http.get("/v1/models/ranker").json()["model_version_status"]}
            assert {v: s["state"] for v, s in status.items()} == {
                "4": "END",
                "3": "END",
                "2": "END",
                "1": "AVAILABLE",
            }
            for version in ("2", "3", "4"):
                assert status[version]["status"]["error_code"] != "OK"
                assert status[version]["status"]["error_message"]
            assert "saved_model.pb" in status["3"]["status"]["error_message"]
            refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
            assert len(refusals) == 3 and all("still serving version 1" in m for m in refusals)
            np.testing.assert_array_equal(served_scores(), v1_scores)
            assert http.get("/v1/models/ranker/metadata").json()["model_spec"]["version"] == "1"
            assert http.post("/v1/models/ranker/versions/2:predict", json=body).status_code == 404

            time.sleep(0.3)  # several polls: unchanged refused versions are not retried
            assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 3

            # Fixing version 4 (a good warm-up file) gets it loaded: its warm-up request is replayed.
            version4 = os.path.join(model_dir, "4")
            good = {
                name: np.array([rows[0][name]], dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
                for name, dtype in toy_ranker.FEATURE_DTYPES.items()
            }
            write_warmup_file(version4, good, "predict")
            wait_for(lambda: states(http).get("4") == "AVAILABLE", what="fixed version 4 loaded")
            assert not np.array_equal(served_scores(), v1_scores)
            assert http.get("/v1/models/ranker/metadata").json()["model_spec"]["version"] == "4"
    finally:
        running.stop()


# --- clients and CLI -------------------------------------------------------------------------


def test_rest_client_ranks_candidates_best_first(server, reference):
    rows = toy_ranker.candidate_features(30)
    shared = {"user_id": "u1", "device": "ios", "position": 3}
    candidates = [{k: v for k, v in row.items() if k not in ("user_id", "device")} for row in rows]
    result = client.rank(client.RestClient(server.url), "ranker", candidates, shared, top=10)
    expected = in_process_predict(reference, [{**row, "user_id": "u1", "device": "ios"} for row in rows])
    order = np.argsort(-expected["score"], kind="stable")[:10]
    assert [r["item_id"] for r in result["ranked"]] == [rows[i]["item_id"] for i in order]
    assert [np.float32(r["score"]) for r in result["ranked"]] == list(expected["score"][order])
    assert result["dropped_inputs"] == ["position"] and result["filled_with_defaults"] == []

    sparse = client.rank(client.RestClient(server.url), "ranker", [{"item_id": "i1"}, {"item_id": "i2"}], {})
    assert "user_id" in sparse["filled_with_defaults"] and len(sparse["ranked"]) == 2
    with pytest.raises(client.ServingRequestError) as error:
        client.RestClient(server.url).status("nope")
    assert error.value.status == 404


def _metadata_response(saved_model_dir: str):
    from tensorflow_serving.apis import get_model_metadata_pb2

    from watchnext.serving.saved_model_version import read_saved_model_proto

    defs = get_model_metadata_pb2.SignatureDefMap()
    for name, signature_def in read_saved_model_proto(saved_model_dir).meta_graphs[0].signature_def.items():
        defs.signature_def[name].CopyFrom(signature_def)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.metadata["signature_def"].Pack(defs)
    return response


class FakePredictionService:
    """Stands in for PredictionServiceStub: answers with the SavedModel called in-process."""

    def __init__(self, model, saved_model_dir: str):
        self.model, self.saved_model_dir, self.requests = model, saved_model_dir, []

    def GetModelMetadata(self, request, timeout=None):  # noqa: N802 - the gRPC method name
        self.requests.append(request)
        return _metadata_response(self.saved_model_dir)

    def Predict(self, request, timeout=None):  # noqa: N802 - the gRPC method name
        from tensorflow_serving.apis import predict_pb2

        self.requests.append(request)
        function = self.model.signatures[request.model_spec.signature_name]
        outputs = function(**{name: tf.make_ndarray(proto) for name, proto in request.inputs.items()})
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response


def test_grpc_predict_request_building():
    request = client.build_predict_request(
        "ranker",
        {"user_id": ["u1", "u2"], "hour_of_day": [3, 4], "item_age_days": [1, 2.5], "history": [[1, 2, 3]]},
        {
            "user_id": "DT_STRING",
            "hour_of_day": "DT_INT64",
            "item_age_days": "DT_FLOAT",
            "history": "DT_INT32",
        },
        signature="predict",
        version=17,
    )
    assert request.model_spec.name == "ranker"
    assert request.model_spec.signature_name == "predict"
    assert request.model_spec.version.value == 17
    assert request.inputs["user_id"].dtype == tf.string.as_datatype_enum
    assert list(request.inputs["user_id"].string_val) == [b"u1", b"u2"]
    assert tf.make_ndarray(request.inputs["hour_of_day"]).dtype == np.int64
    np.testing.assert_array_equal(tf.make_ndarray(request.inputs["item_age_days"]), np.float32([1.0, 2.5]))
    assert [d.size for d in request.inputs["history"].tensor_shape.dim] == [1, 3]
    metadata = client.build_metadata_request("hstu", version=2)
    assert metadata.model_spec.name == "hstu" and list(metadata.metadata_field) == ["signature_def"]
    assert not client.build_predict_request("m", {}, {}, "s").model_spec.HasField("version")


def test_grpc_client_ranks_through_the_stub(exports, reference):
    stub = FakePredictionService(reference, exports["v1"])
    rows = toy_ranker.candidate_features(8)
    result = client.rank(client.GrpcClient("unused:8500", stub=stub), "ranker", rows, {"position": 2})
    expected = in_process_predict(reference, rows)["score"]
    assert sorted(np.float32(r["score"]) for r in result["ranked"]) == sorted(expected)
    assert [r["score"] for r in result["ranked"]] == sorted(
        (r["score"] for r in result["ranked"]), reverse=True
    )
    predict_request = stub.requests[-1]
    assert (
        predict_request.model_spec.name == "ranker" and predict_request.model_spec.signature_name == "predict"
    )
    assert "position" not in predict_request.inputs
    assert sorted(predict_request.inputs) == sorted(toy_ranker.FEATURE_NAMES)


def test_top_k_from_retrieval_outputs():
    ids_and_scores = {"item_ids": [[5, 9, 2]], "scores": [[0.1, 0.9, 0.5]]}
    assert client.top_k(ids_and_scores, 2) == [{"item_id": 9, "score": 0.9}, {"item_id": 2, "score": 0.5}]
    per_item = {"logits": [[0.3, -1.0, 2.0, 0.5]]}
    assert [r["item_id"] for r in client.top_k(per_item, 3)] == [2, 3, 0]


def parser_with_commands() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watchnext")
    cli_commands.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_commands_register_and_query(server, capsys, tmp_path):
    parser = parser_with_commands()
    serve = parser.parse_args(["serve", "--model-base", "/models"])
    assert serve.handler is cli_commands.cmd_serve
    assert (serve.port, serve.host, serve.poll_seconds, serve.model_base) == (
        8501,
        "127.0.0.1",
        5.0,
        "/models",
    )
    grpc_args = parser.parse_args(["query", "retrieve", "--history", "3", "4", "--grpc", "localhost:8500"])
    assert grpc_args.handler is cli_commands.cmd_query_retrieve and grpc_args.grpc == "localhost:8500"

    candidates = tmp_path / "candidates.json"
    candidates.write_text(json.dumps(toy_ranker.candidate_features(5)))
    args = parser.parse_args(
        ["query", "rank", "--url", server.url, "--user-id", "u3", "--candidates", str(candidates)]
        + ["--items", "brand-new", "--feature", "device=tv", "--feature", "position=4", "--top", "4"]
    )
    assert args.handler(args) == 0
    out = capsys.readouterr()
    result = json.loads(out.out)
    assert len(result["ranked"]) == 4 and "item_id" in result["ranked"][0]
    assert "position" in out.err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_process_serves_and_stops_on_sigterm(exports, tmp_path):
    push(exports["v1"], str(tmp_path / "ranker"), 5)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "watchnext.serving.server", "--model-base", str(tmp_path / "ranker")]
        + ["--port", str(port), "--poll-seconds", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def ready():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/models/ranker", timeout=1).status_code == 200
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read()
                return False

        wait_for(ready, timeout=60, what="the server process")
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/models/ranker:regress", json={"examples": [{}]})
        assert answer.status_code == 200 and len(answer.json()["results"]) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "ranker version 5: available" in output


def test_deploy_files_agree_with_the_layout():
    import yaml
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    deploy = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "serving", "deploy")
    with open(os.path.join(deploy, "models.config")) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    models = {m.name: m.base_path for m in config.model_config_list.config}
    assert models == {"ranker": "/models/ranker", "hstu": "/models/hstu"}
    with open(os.path.join(deploy, "docker-compose.yml")) as f:
        service = yaml.safe_load(f)["services"]["tfserving"]
    flags = dict(arg.lstrip("-").split("=", 1) for arg in service["command"])
    assert flags["model_config_file"] == "/config/models.config" and flags["enable_batching"] == "true"
    assert flags["batching_parameters_file"] == "/config/batching.config"
    assert (flags["port"], flags["rest_api_port"]) == ("8500", "8501")
    mounts = {volume.rsplit(":", 2)[1] for volume in service["volumes"]}
    assert mounts == {"/models", "/config/models.config", "/config/batching.config"}
    with open(os.path.join(deploy, "batching.config")) as f:
        batching = {line.split()[0] for line in f if line.strip() and not line.startswith("#")}
    assert {"max_batch_size", "batch_timeout_micros", "num_batch_threads"} <= batching
    with open(os.path.join(deploy, "kserve-inferenceservice.yaml")) as f:
        services = list(yaml.safe_load_all(f))
    for service in services:
        assert service["kind"] == "InferenceService"
        model = service["spec"]["predictor"]["model"]
        assert model["modelFormat"]["name"] == "tensorflow"
        assert model["storageUri"].endswith(f"/serving/{service['metadata']['name']}")
    assert sorted(s["metadata"]["name"] for s in services) == ["hstu", "ranker"]
