"""One loaded, warmed-up SavedModel version and its callable signatures.

`load_version(model_name, version, path)` reads `saved_model.pb` (the signature defs TF
Serving's metadata API shows), loads the SavedModel, and runs a warm-up call on every
signature before returning, so a version that cannot serve never becomes available:

- if the version has TF Serving's warm-up file `assets.extra/tf_serving_warmup_requests`
  (a TFRecord file of `PredictionLog`s), its predict requests are replayed;
- otherwise every signature is called once with a batch of one zero / empty-string input
  (unknown dimensions are 1). The ranker's signatures accept that (every feature has a default).

Any exception (garbage `saved_model.pb`, missing variables, a failing warm-up) propagates: the
registry logs it and keeps serving the last good version.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format, text_format
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from watchnext.serving.errors import InvalidArgument, ServingError

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
INIT_OP_SIGNATURE = "__saved_model_init_op"
# TF errors that are the request's fault (TF Serving answers them with HTTP 400).
CLIENT_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.FailedPreconditionError, tf.errors.OutOfRangeError)


def dtype_name(dtype: tf.DType) -> str:
    """`tf.int64` -> "DT_INT64", as TF Serving names dtypes in metadata and errors."""
    return types_pb2.DataType.Name(dtype.as_datatype_enum)


def shape_text(shape: tf.TensorShape | tuple[int, ...]) -> str:
    """A shape as TF Serving prints it: [-1,15] (unknown dimensions are -1)."""
    dims = tf.TensorShape(shape)
    if dims.rank is None:
        return "[?]"
    return "[" + ",".join("-1" if d is None else str(d) for d in dims.as_list()) + "]"


_TRACE_LINES = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "  File ")


def tf_error_message(error: tf.errors.OpError) -> str:
    """A TF runtime error's message without its graph node trace: what went wrong, e.g. which feature."""
    message = error.message.split("\n\t [[", 1)[0].split(" [Op:", 1)[0]
    lines = [line.strip() for line in message.splitlines() if not line.startswith(_TRACE_LINES)]
    return " ".join(line for line in lines if line) or message.strip()


@dataclasses.dataclass(frozen=True)
class Signature:
    """A callable signature with its input and output specs (name -> tf.TensorSpec)."""

    name: str
    function: Any  # a ConcreteFunction
    inputs: dict[str, tf.TensorSpec]
    outputs: dict[str, tf.TensorSpec]
    method_name: str

    def __call__(self, tensors: dict[str, Any]) -> dict[str, np.ndarray]:
        """Runs the signature on numpy arrays keyed by input name; TF client errors -> InvalidArgument."""
        try:
            arguments = {
                name: tf.convert_to_tensor(value, dtype=self.inputs[name].dtype)
                for name, value in tensors.items()
            }
            results = self.function(**arguments)
        except CLIENT_ERRORS as error:
            raise InvalidArgument(tf_error_message(error)) from error
        except tf.errors.OpError as error:
            raise ServingError(tf_error_message(error)) from error
        return {name: value.numpy() for name, value in results.items()}


@dataclasses.dataclass(frozen=True)
class LoadedVersion:
    """A servable: one version of one model, loaded and warmed up."""

    model_name: str
    version: int
    path: str
    signatures: dict[str, Signature]
    signature_def_json: dict[str, Any]  # TF Serving's SignatureDefMap JSON of `signatures`
    saved_model: Any = dataclasses.field(repr=False)  # keeps variables and tables alive

    def signature(self, name: str | None) -> Signature:
        """The signature `name` ("" or None: serving_default); unknown -> InvalidArgument (HTTP 400)."""
        key = name or tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
        try:
            return self.signatures[key]
        except KeyError:
            known = ", ".join(sorted(self.signatures)) or "none"
            raise InvalidArgument(
                f'Serving signature name: "{key}" not found in signature def (signatures: {known})'
            ) from None


def read_saved_model_proto(path: str) -> saved_model_pb2.SavedModel:
    """Parses `saved_model.pb` (or `.pbtxt`); raises on a missing or corrupt file."""
    proto = saved_model_pb2.SavedModel()
    binary = os.path.join(path, "saved_model.pb")
    text = os.path.join(path, "saved_model.pbtxt")
    if os.path.exists(binary):
        with open(binary, "rb") as f:
            proto.ParseFromString(f.read())
    elif os.path.exists(text):
        with open(text, encoding="utf-8") as f:
            text_format.Parse(f.read(), proto)
    else:
        raise FileNotFoundError(f"no saved_model.pb in {path}")
    if not proto.meta_graphs:
        raise ValueError(f"{path}/saved_model.pb has no MetaGraph")
    return proto


def _signatures(saved_model: Any, signature_defs: Any) -> dict[str, Signature]:
    return {
        name: Signature(
            name,
            function,
            inputs=dict(function.structured_input_signature[1]),
            outputs=dict(function.structured_outputs),
            method_name=signature_defs[name].method_name if name in signature_defs else "",
        )
        for name, function in saved_model.signatures.items()
    }


def _dummy_input(spec: tf.TensorSpec) -> np.ndarray:
    shape = [1 if d is None else d for d in (spec.shape.as_list() if spec.shape.rank is not None else [1])]
    if spec.dtype == tf.string:
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=spec.dtype.as_numpy_dtype)


def _replay_warmup_file(loaded: LoadedVersion, warmup_path: str) -> int:
    from tensorflow_serving.apis import prediction_log_pb2

    replayed = 0
    for record in tf.data.TFRecordDataset(warmup_path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.WhichOneof("log_type") != "predict_log":
            logging.warning("%s: skipping a %s warm-up record", warmup_path, log.WhichOneof("log_type"))
            continue
        request = log.predict_log.request
        signature = loaded.signature(request.model_spec.signature_name)
        signature({name: tf.make_ndarray(proto) for name, proto in request.inputs.items()})
        replayed += 1
    return replayed


def warm_up(loaded: LoadedVersion) -> str:
    """Runs the warm-up calls (see the module docstring); returns what was done."""
    warmup_path = os.path.join(loaded.path, WARMUP_FILE)
    if os.path.exists(warmup_path):
        return f"replayed {_replay_warmup_file(loaded, warmup_path)} warm-up requests"
    for signature in loaded.signatures.values():
        signature({name: _dummy_input(spec) for name, spec in signature.inputs.items()})
    return f"called {len(loaded.signatures)} signatures once"


def load_version(model_name: str, version: int, path: str, warmup: bool = True) -> LoadedVersion:
    """Loads (and by default warms up) `path`; raises if it cannot serve."""
    proto = read_saved_model_proto(path)
    saved_model = tf.saved_model.load(path)
    signature_defs = proto.meta_graphs[0].signature_def
    signatures = _signatures(saved_model, signature_defs)
    if not signatures:
        raise ValueError(f"{path} has no serving signatures")
    signature_def_json = {
        name: json_format.MessageToDict(signature_defs[name], preserving_proto_field_name=True)
        for name in sorted(signatures)
        if name in signature_defs and name != INIT_OP_SIGNATURE
    }
    loaded = LoadedVersion(model_name, version, path, signatures, signature_def_json, saved_model)
    if warmup:
        done = warm_up(loaded)
        logging.info("%s version %s: warm-up %s", model_name, version, done)
    return loaded
