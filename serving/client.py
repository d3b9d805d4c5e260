"""Clients of TF Serving's API: REST (our server, TF Serving, KServe) and gRPC (TF Serving).

Both clients read a signature's inputs from the model's metadata and send one `predict` call
with the columnar (`inputs`) encoding, so they work for any SavedModel signature:

- `rank(client, model, candidates, shared)`: one user and N candidate items -> the items sorted
  by `score` (or another output). `shared` holds the user's and the request's features
  (user_id, device, ...), each candidate dict its item's features; a candidate's value wins.
  Inputs the signature takes but nobody gave are filled with zeros / "" (the pipeline's value
  for a missing feature) and listed in the result; features it does not take (e.g. position)
  are dropped before sending and listed too.
- `retrieve(client, model, history, ...)`: the top-K items for one user history from a
  retrieval (HSTU) signature: either its (ids, scores) outputs or, when it returns one score per
  item, the K best item indices.

`RestClient` uses only the standard library; `GrpcClient` uses
`tensorflow_serving.apis.prediction_service_pb2_grpc.PredictionServiceStub`, and the protos it
sends are built by `build_predict_request` / `build_metadata_request` (plain functions, tested
without a network).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import urllib.error
import urllib.request
from typing import Any

FLOAT_DTYPES = ("DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16")
INT_DTYPES = (
    "DT_INT8",
    "DT_INT16",
    "DT_INT32",
    "DT_INT64",
    "DT_UINT8",
    "DT_UINT16",
    "DT_UINT32",
    "DT_UINT64",
)


class ServingRequestError(RuntimeError):
    """The server answered with an error (HTTP status or gRPC code, and its message)."""

    def __init__(self, status: Any, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """What metadata says of one signature input or output."""

    dtype: str  # "DT_STRING", "DT_INT64", ...
    rank: int | None  # None = unknown


@dataclasses.dataclass(frozen=True)
class SignatureSpec:
    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]


def signature_spec_from_json(signature_defs: dict[str, Any], signature: str) -> SignatureSpec:
    """From GetModelMetadata's SignatureDefMap JSON (`metadata.signature_def.signature_def`)."""
    if signature not in signature_defs:
        raise ServingRequestError(
            "NOT_FOUND", f"no signature {signature!r}; the model has: {', '.join(sorted(signature_defs))}"
        )

    def specs(infos: dict[str, Any]) -> dict[str, TensorSpec]:
        out = {}
        for name, info in infos.items():
            shape = info.get("tensor_shape", {})
            rank = None if shape.get("unknown_rank") else len(shape.get("dim", []))
            out[name] = TensorSpec(info.get("dtype", "DT_INVALID"), rank)
        return out

    sig = signature_defs[signature]
    return SignatureSpec(signature, specs(sig.get("inputs", {})), specs(sig.get("outputs", {})))


def cast_value(value: Any, dtype: str) -> Any:
    """A JSON-ready value (or nested list) of `dtype`: 3 -> 3.0 for floats, "7" -> 7 for ints, ..."""
    if isinstance(value, list | tuple):
        return [cast_value(v, dtype) for v in value]
    if dtype == "DT_STRING":
        return value if isinstance(value, bytes) else str(value)
    if dtype in FLOAT_DTYPES:
        return float(value)
    if dtype in INT_DTYPES:
        return int(value)
    if dtype == "DT_BOOL":
        return bool(value)
    return value


def default_value(dtype: str) -> Any:
    """The value of a missing feature: "" for strings, else 0."""
    if dtype == "DT_STRING":
        return ""
    if dtype in FLOAT_DTYPES:
        return 0.0
    if dtype == "DT_BOOL":
        return False
    return 0


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    return value


class RestClient:
    """TF Serving's REST API at `url` (http://host:8501)."""

    def __init__(self, url: str = "http://127.0.0.1:8501", timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            f"{self.url}/v1/models/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            text = error.read().decode("utf-8", "replace")
            try:
                message = json.loads(text).get("error", text)
            except (json.JSONDecodeError, AttributeError):
                message = text
            raise ServingRequestError(error.code, message) from None

    @staticmethod
    def _model_path(model: str, version: int | None) -> str:
        return model if version is None else f"{model}/versions/{version}"

    def status(self, model: str, version: int | None = None) -> dict:
        return self.request("GET", self._model_path(model, version))

    def metadata(self, model: str, version: int | None = None) -> dict:
        return self.request("GET", f"{self._model_path(model, version)}/metadata")

    def signature_spec(self, model: str, signature: str, version: int | None = None) -> SignatureSpec:
        defs = self.metadata(model, version)["metadata"]["signature_def"]["signature_def"]
        return signature_spec_from_json(defs, signature)

    def predict_columns(
        self, model: str, inputs: dict[str, Any], signature: str, version: int | None = None
    ) -> dict[str, Any]:
        """Columnar predict; returns {output name: batched value} (the name is "output" when only one)."""
        body = {"signature_name": signature, "inputs": {k: _to_json(v) for k, v in inputs.items()}}
        outputs = self.request("POST", f"{self._model_path(model, version)}:predict", body)["outputs"]
        return outputs if isinstance(outputs, dict) else {"output": outputs}


def build_predict_request(
    model: str, inputs: dict[str, Any], dtypes: dict[str, str], signature: str, version: int | None = None
):
    """The gRPC PredictRequest for columnar `inputs` (name -> nested list) of the given dtypes."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        dtype = tf.dtypes.as_dtype(types_pb2.DataType.Value(dtypes[name]))
        array = np.array(value, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
        if dtype == tf.string:
            array = np.vectorize(
                lambda v: v if isinstance(v, bytes) else str(v).encode("utf-8"), otypes=[object]
            )(array)
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array, dtype=dtype))
    return request


def build_metadata_request(model: str, version: int | None = None):
    """The gRPC GetModelMetadataRequest for the model's signature defs."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = int(version)
    request.metadata_field.append("signature_def")
    return request


def outputs_from_response(response) -> dict[str, Any]:
    """A PredictResponse's outputs as {name: nested lists} (strings decoded when UTF-8)."""
    import tensorflow as tf

    outputs = {}
    for name, proto in response.outputs.items():
        value = tf.make_ndarray(proto).tolist()
        outputs[name] = _decode_strings(value)
    return outputs


def _decode_strings(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode_strings(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return value


class GrpcClient:
    """TF Serving's gRPC PredictionService at `target` (host:8500). Thin: protos come from build_*."""

    def __init__(self, target: str, timeout: float = 30.0, stub: Any = None):
        self.target = target
        self.timeout = timeout
        if stub is None:
            import grpc
            from tensorflow_serving.apis import prediction_service_pb2_grpc

            stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(target))
        self.stub = stub

    def _call(self, method: str, request):
        import grpc

        try:
            return getattr(self.stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ServingRequestError(error.code().name, error.details()) from None

    def signature_spec(self, model: str, signature: str, version: int | None = None) -> SignatureSpec:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        response = self._call("GetModelMetadata", build_metadata_request(model, version))
        defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(defs)
        defs_json = json_format.MessageToDict(defs, preserving_proto_field_name=True).get("signature_def", {})
        return signature_spec_from_json(defs_json, signature)

    def predict_columns(
        self,
        model: str,
        inputs: dict[str, Any],
        signature: str,
        version: int | None = None,
        dtypes: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        if dtypes is None:
            dtypes = {k: v.dtype for k, v in self.signature_spec(model, signature, version).inputs.items()}
        request = build_predict_request(model, inputs, dtypes, signature, version)
        return outputs_from_response(self._call("Predict", request))


def _predict(client, model: str, inputs: dict, spec: SignatureSpec, version: int | None) -> dict[str, Any]:
    if isinstance(client, GrpcClient):
        dtypes = {name: s.dtype for name, s in spec.inputs.items()}
        return client.predict_columns(model, inputs, spec.name, version, dtypes=dtypes)
    return client.predict_columns(model, inputs, spec.name, version)


@dataclasses.dataclass
class RankingRequest:
    """Columnar inputs for one user's candidates, and what was filled or dropped on the way."""

    inputs: dict[str, list]
    filled_with_defaults: list[str]
    dropped: list[str]


def ranking_inputs(candidates: list[dict], shared: dict[str, Any], spec: SignatureSpec) -> RankingRequest:
    """One column per signature input, one row per candidate (see the module docstring)."""
    given = set(shared).union(*(c.keys() for c in candidates)) if candidates else set(shared)
    inputs, filled = {}, []
    for name, tensor in sorted(spec.inputs.items()):
        if name not in given:
            filled.append(name)
        column = [
            candidate.get(name, shared.get(name, default_value(tensor.dtype))) for candidate in candidates
        ]
        inputs[name] = cast_value(column, tensor.dtype)
    return RankingRequest(inputs, filled, sorted(given - set(spec.inputs)))


def rank(
    client,
    model: str,
    candidates: list[dict],
    shared: dict[str, Any],
    signature: str = "predict",
    score_output: str = "score",
    id_feature: str = "item_id",
    version: int | None = None,
    top: int | None = None,
) -> dict[str, Any]:
    """Scores the candidates in one call; returns them sorted by `score_output`, best first."""
    spec = client.signature_spec(model, signature, version)
    request = ranking_inputs(candidates, shared, spec)
    outputs = _predict(client, model, request.inputs, spec, version)
    if score_output not in outputs:
        raise ServingRequestError(
            "INVALID_ARGUMENT", f"no output {score_output!r}; outputs: {sorted(outputs)}"
        )
    rows = []
    for i, candidate in enumerate(candidates):
        row = {id_feature: candidate.get(id_feature, i)}
        row.update({name: values[i] for name, values in sorted(outputs.items())})
        rows.append(row)
    rows.sort(key=lambda r: r[score_output], reverse=True)
    return {
        "model": model,
        "signature": signature,
        "ranked": rows[:top] if top else rows,
        "filled_with_defaults": request.filled_with_defaults,
        "dropped_inputs": request.dropped,
    }


def _pick_output(
    outputs: dict[str, list], wanted: str | None, numeric: bool, exclude: str | None
) -> str | None:
    if wanted is not None:
        if wanted not in outputs:
            raise ServingRequestError("INVALID_ARGUMENT", f"no output {wanted!r}; outputs: {sorted(outputs)}")
        return wanted
    candidates = []
    for name, value in sorted(outputs.items()):
        row = value[0] if isinstance(value, list) and value else value
        if name == exclude or not isinstance(row, list) or not row:
            continue
        is_float = isinstance(row[0], float)
        if is_float == numeric:
            candidates.append(name)
    if numeric:
        preferred = [n for n in candidates if "score" in n or "logit" in n]
        candidates = preferred or candidates
    return candidates[0] if candidates else None


def top_k(
    outputs: dict[str, list], k: int, ids_output: str | None = None, scores_output: str | None = None
) -> list[dict[str, Any]]:
    """The K best (id, score) of the first example of a retrieval call's outputs."""
    scores_name = _pick_output(outputs, scores_output, numeric=True, exclude=None)
    if scores_name is None:
        raise ServingRequestError("INVALID_ARGUMENT", f"no per-item float output among {sorted(outputs)}")
    ids_name = _pick_output(outputs, ids_output, numeric=False, exclude=scores_name)
    scores = outputs[scores_name][0]
    ids = outputs[ids_name][0] if ids_name else list(range(len(scores)))
    if len(ids) != len(scores):
        raise ServingRequestError(
            "INVALID_ARGUMENT", f"outputs {ids_name!r} and {scores_name!r} have different lengths"
        )
    best = sorted(zip(ids, scores, strict=True), key=lambda pair: pair[1], reverse=True)[:k]
    return [{"item_id": item, "score": score} for item, score in best]


def retrieve(
    client,
    model: str,
    history: list[Any],
    signature: str = "serving_default",
    history_input: str = "history_item_ids",
    extra_inputs: dict[str, Any] | None = None,
    k: int = 10,
    ids_output: str | None = None,
    scores_output: str | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """Top-K items for one history (a batch of one) from a retrieval signature."""
    spec = client.signature_spec(model, signature, version)
    given = {history_input: history, **(extra_inputs or {})}
    unknown = sorted(set(given) - set(spec.inputs))
    if unknown:
        raise ServingRequestError(
            "INVALID_ARGUMENT",
            f"signature {signature!r} has no input(s) {unknown}; its inputs: {sorted(spec.inputs)}",
        )
    missing = sorted(set(spec.inputs) - set(given))
    if missing:
        raise ServingRequestError("INVALID_ARGUMENT", f"give the input(s) {missing} with --input NAME=JSON")
    inputs = {}
    for name, value in given.items():
        tensor = spec.inputs[name]
        value = cast_value(value, tensor.dtype)
        inputs[name] = value if tensor.rank == 0 else [value]  # a batch of one
    outputs = _predict(client, model, inputs, spec, version)
    return {"model": model, "signature": signature, "top_k": top_k(outputs, k, ids_output, scores_output)}
