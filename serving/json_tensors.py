"""TF Serving's JSON tensor encoding for `:predict`: request JSON -> numpy inputs, outputs -> JSON.

Requests (https://www.tensorflow.org/tfx/serving/api_rest, "Predict API"):

- row format `{"signature_name": S, "instances": [...]}`: one element per example; a list of
  objects `{input name: value}` when the signature has several inputs, or plain values for a
  single-input signature. Answered as `{"predictions": [...]}` (one object per example when
  the signature has several outputs, else one value);
- columnar format `{"signature_name": S, "inputs": {input name: batched value}}` (or a plain
  value for a single input). Answered as `{"outputs": {output name: batched value}}` (or a
  plain value for a single output).

Values are dense nested lists. DT_STRING takes JSON strings (UTF-8) or `{"b64": "..."}` for
binary strings (e.g. serialized tf.Examples); integer dtypes take JSON integers; float dtypes
take JSON numbers; DT_BOOL takes true/false. String outputs whose name ends in `_bytes` (or that
are not UTF-8) are answered as `{"b64": ...}`.

**Inputs the signature does not take are dropped, not refused** (TF Serving refuses them).
`position`, in particular, is logged by clients with every impression but read by no ranker
signature; dropping it keeps such requests working and, since the model never sees it, cannot
change a score. The names dropped are returned in `ParsedPredictRequest.ignored` (the server
sends them back in the `X-Watchnext-Ignored-Inputs` header and logs each name once).
Missing inputs, wrong dtypes and wrong shapes are refused with HTTP 400 naming the input.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
from typing import Any

import numpy as np
import tensorflow as tf

from watchnext.serving.errors import InvalidArgument
from watchnext.serving.saved_model_version import Signature, dtype_name, shape_text

B64 = "b64"
BYTES_SUFFIX = "_bytes"


@dataclasses.dataclass(frozen=True)
class ParsedPredictRequest:
    signature_name: str
    tensors: dict[str, np.ndarray]
    row_format: bool
    ignored: tuple[str, ...]  # request inputs the signature does not take (dropped)


def is_b64(value: Any) -> bool:
    return type(value) is dict and len(value) == 1 and type(value.get(B64)) is str


def _is_object(value: Any) -> bool:
    """A JSON object of named inputs (not a {"b64": ...} value)."""
    return type(value) is dict and not is_b64(value)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "number",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decode_b64(value: dict, name: str) -> bytes:
    try:
        return base64.b64decode(value[B64], validate=True)
    except (binascii.Error, ValueError):
        try:  # web-safe alphabet, as TF Serving also accepts
            return base64.urlsafe_b64decode(value[B64])
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"input '{name}': unable to base64 decode {preview(value[B64])}") from None


def _dense_shape(value: Any) -> list[int]:
    shape = []
    while type(value) is list:
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _flatten(value: Any, shape: list[int], level: int, out: list, name: str) -> None:
    if type(value) is not list:
        if level != len(shape):
            raise InvalidArgument(
                f"input '{name}': value {preview(value)} at nesting level {level + 1}, expected at level "
                f"{len(shape)}: tensors must be dense (not ragged) lists"
            )
        out.append(value)
        return
    if level >= len(shape) or len(value) != shape[level]:
        raise InvalidArgument(
            f"input '{name}': ragged list (a list of length {len(value)} at nesting level {level + 1}, "
            f"expected length {shape[level] if level < len(shape) else 'none: a value'}); "
            "tensors must be dense"
        )
    if level + 1 == len(shape):
        if any(type(v) is list for v in value):
            raise InvalidArgument(f"input '{name}': ragged list (lists nested to different depths)")
        out.extend(value)
    else:
        for item in value:
            _flatten(item, shape, level + 1, out, name)


def _type_error(name: str, value: Any, dtype: tf.DType) -> InvalidArgument:
    return InvalidArgument(
        f"input '{name}': JSON value {preview(value)} ({json_type(value)}) is not of the expected type "
        f"{dtype_name(dtype)}"
    )


def _leaves_to_array(leaves: list, dtype: tf.DType, name: str) -> np.ndarray:
    if dtype == tf.string:
        out = np.empty(len(leaves), dtype=object)
        for i, value in enumerate(leaves):
            if type(value) is str:
                out[i] = value.encode("utf-8")
            elif is_b64(value):
                out[i] = decode_b64(value, name)
            else:
                raise _type_error(name, value, dtype)
        return out
    if dtype == tf.bool:
        accepted: tuple[type, ...] = (bool,)
    elif dtype.is_integer:
        accepted = (int,)
    elif dtype.is_floating:
        accepted = (int, float)
    else:
        raise InvalidArgument(f"input '{name}': JSON conversion to {dtype_name(dtype)} is not supported")
    for value in leaves:
        if type(value) not in accepted:
            raise _type_error(name, value, dtype)
    try:
        with np.errstate(over="ignore"):  # float overflow is checked below
            array = np.asarray(leaves, dtype=dtype.as_numpy_dtype)
    except OverflowError:
        raise InvalidArgument(f"input '{name}': a value is out of the range of {dtype_name(dtype)}") from None
    if dtype.is_floating and array.size and not np.isfinite(array).all():
        for value, converted in zip(leaves, array.tolist(), strict=True):
            if math.isfinite(value) and not math.isfinite(converted):
                raise InvalidArgument(
                    f"input '{name}': cannot convert {value} to {dtype_name(dtype)} without loss of precision"
                )
    return array


def json_to_array(value: Any, spec: tf.TensorSpec, name: str) -> np.ndarray:
    """A dense numpy array of `spec`'s dtype; InvalidArgument (naming `name`) if it cannot be one."""
    shape = _dense_shape(value)
    leaves: list = []
    _flatten(value, shape, 0, leaves, name)
    array = _leaves_to_array(leaves, spec.dtype, name).reshape(shape)
    if not spec.shape.is_compatible_with(array.shape):
        raise InvalidArgument(
            f"input '{name}': shape {shape_text(array.shape)} does not match the signature's "
            f"{shape_text(spec.shape)} ({dtype_name(spec.dtype)})"
        )
    return array


def parse_predict_request(request: Any, signature_of) -> ParsedPredictRequest:
    """Parses a `:predict` body (already JSON-decoded); `signature_of(name)` -> Signature."""
    if type(request) is not dict:
        raise InvalidArgument(f"the request must be a JSON object, not {json_type(request)}")
    signature_name = request.get("signature_name", "")
    if type(signature_name) is not str:
        raise InvalidArgument("'signature_name' must be a string")
    signature: Signature = signature_of(signature_name)
    if "instances" in request and "inputs" in request:
        raise InvalidArgument("the request must have only one of 'inputs' or 'instances'")
    names = signature.inputs
    if "instances" in request:
        columns, ignored = _row_columns(request["instances"], signature)
        row_format = True
    elif "inputs" in request:
        columns, ignored = _columnar_columns(request["inputs"], signature)
        row_format = False
    else:
        raise InvalidArgument("missing 'inputs' or 'instances' key")
    tensors = {name: json_to_array(columns[name], names[name], name) for name in names}
    return ParsedPredictRequest(signature.name, tensors, row_format, tuple(sorted(ignored)))


def _input_list(signature: Signature) -> str:
    return ", ".join(sorted(signature.inputs))


def _row_columns(instances: Any, signature: Signature) -> tuple[dict[str, list], set[str]]:
    if type(instances) is not list:
        raise InvalidArgument(f"'instances' must be a list, not {json_type(instances)}")
    if not instances:
        raise InvalidArgument("no values in 'instances' list")
    names = signature.inputs
    if not _is_object(instances[0]):
        if len(names) != 1:
            raise InvalidArgument(
                f"'instances' is a plain list, but signature '{signature.name}' takes {len(names)} inputs "
                f"({_input_list(signature)}): send a list of objects"
            )
        for i, instance in enumerate(instances):
            if _is_object(instance):
                raise InvalidArgument(f"instances[{i}] is an object, instances[0] is not")
        return {next(iter(names)): instances}, set()
    ignored: set[str] = set()
    for i, instance in enumerate(instances):
        if not _is_object(instance):
            raise InvalidArgument(f"instances[{i}] is not an object, instances[0] is")
        if len(instance) != len(names) or not names.keys() >= instance.keys():
            ignored.update(key for key in instance if key not in names)
    columns = {}
    for name in names:
        try:
            columns[name] = [instance[name] for instance in instances]
        except KeyError:
            i, instance = next((i, instance) for i, instance in enumerate(instances) if name not in instance)
            missing = ", ".join(repr(n) for n in sorted(names) if n not in instance)
            raise InvalidArgument(
                f"instances[{i}] has no input(s) {missing} (signature '{signature.name}' takes: "
                f"{_input_list(signature)})"
            ) from None
    return columns, ignored


def _columnar_columns(inputs: Any, signature: Signature) -> tuple[dict[str, Any], set[str]]:
    names = signature.inputs
    if not _is_object(inputs):
        if len(names) != 1:
            raise InvalidArgument(
                f"'inputs' is a plain value, but signature '{signature.name}' takes {len(names)} inputs "
                f"({_input_list(signature)}): send an object"
            )
        return {next(iter(names)): inputs}, set()
    missing = [name for name in sorted(names) if name not in inputs]
    if missing:
        raise InvalidArgument(
            f"missing input(s) {', '.join(repr(m) for m in missing)} in 'inputs' (signature "
            f"'{signature.name}' takes: {_input_list(signature)})"
        )
    return {name: inputs[name] for name in names}, {key for key in inputs if key not in names}


def _bytes_to_json(value: bytes, as_b64: bool) -> Any:
    if not as_b64:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return {B64: base64.b64encode(value).decode("ascii")}


def array_to_json(array: np.ndarray, name: str) -> Any:
    """A numpy output as JSON-ready (nested) lists or a scalar."""
    array = np.asarray(array)
    if array.dtype.kind in "OSU":
        as_b64 = name.endswith(BYTES_SUFFIX)
        flat = [
            _bytes_to_json(v if isinstance(v, bytes) else str(v).encode("utf-8"), as_b64)
            for v in array.ravel()
        ]
        return np.array(flat, dtype=object).reshape(array.shape).tolist() if array.ndim else flat[0]
    return array.tolist()


def predict_response(outputs: dict[str, np.ndarray], row_format: bool) -> dict[str, Any]:
    """TF Serving's `:predict` answer for the signature's `outputs`."""
    names = sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return {"outputs": array_to_json(outputs[names[0]], names[0])}
        return {"outputs": {name: array_to_json(outputs[name], name) for name in names}}
    batch = None
    for name in names:
        shape = np.shape(outputs[name])
        if not shape:
            raise InvalidArgument(f"output '{name}' has no batch dimension: use the columnar 'inputs' format")
        if batch is not None and shape[0] != batch:
            raise InvalidArgument(
                f"output '{name}' has batch size {shape[0]}, expected {batch}: use the columnar 'inputs'"
            )
        batch = shape[0]
    columns = {name: array_to_json(outputs[name], name) for name in names}
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    return {"predictions": [{name: columns[name][i] for name in names} for i in range(batch or 0)]}
