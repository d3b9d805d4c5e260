"""TF Serving's `:classify` / `:regress` JSON: tf.Examples in, `{"results": ...}` out.

Request: `{"signature_name": S, "context": {feature: value|list}, "examples": [{feature: value|list}]}`.
Each example becomes a serialized `tf.Example`, with the `context` features merged in (an
example's own feature wins), and is fed to the signature's single DT_STRING input (serialized
tf.Examples: the ranker's `serving_default`). Feature values follow TF Serving: JSON integers
and booleans -> int64_list, numbers with a decimal point -> float_list (write 3.0, not 3, for a
float feature), strings and `{"b64": ...}` -> bytes_list; one feature's values share one kind.
Features the model does not parse (e.g. `position`) are ignored by its parse spec.

Answers, for the signature's outputs:
- `:regress` -> `{"results": [value per example]}` from the output `outputs` (TF Serving's
  regression signature), else the only output, else `score` (the ranker's main output);
- `:classify` -> `{"results": [[[label, score], ...] per example]}`: from `scores` (and `classes`
  for the labels, else "") as TF Serving's classification signature, else one `[output name,
  value]` pair per float output of shape `[batch]` (the ranker's probabilities, rating, ...).

TF Serving itself runs these verbs only on signatures whose method_name is classify / regress;
the ranker's are predict signatures, so against TF Serving use `:predict` with `{"b64": ...}`
serialized examples instead (see serving/README.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2, feature_pb2

from watchnext.serving.errors import InvalidArgument
from watchnext.serving.json_tensors import decode_b64, is_b64, json_type, preview
from watchnext.serving.saved_model_version import Signature

REGRESS_OUTPUTS = ("outputs", "score")


def _feature(name: str, value: Any) -> feature_pb2.Feature:
    values = value if type(value) is list else [value]
    kinds = set()
    encoded: list = []
    for item in values:
        if type(item) in (bool, int):
            kinds.add("int64")
            encoded.append(int(item))
        elif type(item) is float:
            kinds.add("float")
            encoded.append(item)
        elif type(item) is str:
            kinds.add("bytes")
            encoded.append(item.encode("utf-8"))
        elif is_b64(item):
            kinds.add("bytes")
            encoded.append(decode_b64(item, name))
        else:
            raise InvalidArgument(
                f"feature '{name}': element {preview(item)} has unexpected JSON type {json_type(item)}"
            )
    if len(kinds) > 1:
        raise InvalidArgument(
            f"feature '{name}': mixes {' and '.join(sorted(kinds))} values (one feature holds one kind; "
            "write floats with a decimal point)"
        )
    feature = feature_pb2.Feature()
    kind = next(iter(kinds), None)
    if kind == "int64":
        feature.int64_list.value.extend(encoded)
    elif kind == "float":
        feature.float_list.value.extend(encoded)
    elif kind == "bytes":
        feature.bytes_list.value.extend(encoded)
    return feature


def _features(obj: Any, where: str) -> dict[str, feature_pb2.Feature]:
    if type(obj) is not dict:
        raise InvalidArgument(f"{where} must be a JSON object of features, not {json_type(obj)}")
    return {name: _feature(name, value) for name, value in obj.items()}


def serialized_examples(request: Any) -> list[bytes]:
    """The request's examples (context merged in), serialized."""
    if type(request) is not dict:
        raise InvalidArgument(f"the request must be a JSON object, not {json_type(request)}")
    if "examples" not in request:
        raise InvalidArgument("key 'examples' is expected and was not found")
    examples = request["examples"]
    if type(examples) is not list:
        raise InvalidArgument(f"'examples' must be a list, not {json_type(examples)}")
    if not examples:
        raise InvalidArgument("'examples' is an empty list")
    context = _features(request["context"], "'context'") if "context" in request else {}
    serialized = []
    for i, example in enumerate(examples):
        features = {**context, **_features(example, f"examples[{i}]")}
        proto = example_pb2.Example()
        for name, feature in features.items():
            proto.features.feature[name].CopyFrom(feature)
        serialized.append(proto.SerializeToString())
    return serialized


def examples_signature(signature: Signature, verb: str) -> str:
    """The name of the signature's serialized-examples input; InvalidArgument if it has none."""
    if len(signature.inputs) != 1 or next(iter(signature.inputs.values())).dtype != tf.string:
        raise InvalidArgument(
            f"signature '{signature.name}' does not take serialized tf.Examples (one DT_STRING input), "
            f"so it cannot {verb}; its inputs: {', '.join(sorted(signature.inputs))}"
        )
    return next(iter(signature.inputs))


def regress_results(signature: Signature, outputs: dict[str, np.ndarray]) -> list[float]:
    if len(outputs) == 1:
        name = next(iter(outputs))
    else:
        name = next((key for key in REGRESS_OUTPUTS if key in outputs), None)
        if name is None:
            raise InvalidArgument(
                f"signature '{signature.name}' has several outputs ({', '.join(sorted(outputs))}) and none "
                f"named {' or '.join(REGRESS_OUTPUTS)}: use :predict"
            )
    values = np.asarray(outputs[name])
    if values.dtype.kind != "f" or values.ndim not in (1, 2) or (values.ndim == 2 and values.shape[1] != 1):
        raise InvalidArgument(
            f"output '{name}' is not one float per example (shape {values.shape}): use :predict"
        )
    return values.reshape(-1).tolist()


def classify_results(signature: Signature, outputs: dict[str, np.ndarray]) -> list[list[list[Any]]]:
    if "scores" in outputs:
        scores = np.asarray(outputs["scores"], dtype=np.float64)
        scores = scores.reshape(len(scores), -1)
        if "classes" in outputs:
            classes = np.asarray(outputs["classes"]).reshape(scores.shape)
            labels = [[c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in row] for row in classes]
        else:
            labels = [[""] * scores.shape[1] for _ in range(scores.shape[0])]
        return [
            [[label, score] for label, score in zip(row_labels, row_scores, strict=True)]
            for row_labels, row_scores in zip(labels, scores.tolist(), strict=True)
        ]
    names = sorted(
        name for name, value in outputs.items() if np.asarray(value).dtype.kind == "f" and np.ndim(value) == 1
    )
    if not names:
        raise InvalidArgument(
            f"signature '{signature.name}' has no 'scores' output and no float output of shape [batch]: "
            "use :predict"
        )
    columns = {name: np.asarray(outputs[name]).tolist() for name in names}
    batch = len(columns[names[0]])
    return [[[name, columns[name][i]] for name in names] for i in range(batch)]
