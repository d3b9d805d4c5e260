"""tf.Example messages without importing TensorFlow, for Beam workers.

Beam workers only parse and build tf.Examples; importing TensorFlow for that
costs each worker about 0.6 GB and seconds of start-up. This module declares
the same messages (tensorflow/core/example/{feature,example}.proto: same
package, names and field numbers, so the same wire format) with protobuf alone.

Example:
    example = Example.FromString(serialized)
    set_values(example, "user_view_count", [3])
    example.SerializeToString()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "watchnext.tfexample"  # not "tensorflow": no clash if TensorFlow is imported too


def _field(message, name: str, number: int, kind: int, type_name: str = "", repeated: bool = False):
    field = message.field.add(name=name, number=number, type=kind)
    field.label = field.LABEL_REPEATED if repeated else field.LABEL_OPTIONAL
    if type_name:
        field.type_name = f".{_PACKAGE}.{type_name}"
    return field


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="watchnext_tf_example.proto", package=_PACKAGE)
    file.syntax = "proto3"
    for name, kind in (("BytesList", F.TYPE_BYTES), ("FloatList", F.TYPE_FLOAT), ("Int64List", F.TYPE_INT64)):
        message = file.message_type.add(name=name)
        field = _field(message, "value", 1, kind, repeated=True)
        if kind != F.TYPE_BYTES:
            field.options.packed = True
    feature = file.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, type_name) in enumerate(
        (("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List")), start=1
    ):
        _field(feature, name, number, F.TYPE_MESSAGE, type_name).oneof_index = 0
    features = file.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, F.TYPE_STRING)
    _field(entry, "value", 2, F.TYPE_MESSAGE, "Feature")
    _field(features, "feature", 1, F.TYPE_MESSAGE, "Features.FeatureEntry", repeated=True)
    example = file.message_type.add(name="Example")
    _field(example, "features", 1, F.TYPE_MESSAGE, "Features")
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_build_file())
Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.Example"))


def scalar(example, name: str, default=None):
    """The first value of a feature, or `default` when the feature is absent or empty."""
    feature = example.features.feature.get(name)
    if feature is None:
        return default
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else ()
    return values[0] if values else default


def values(example, name: str) -> list:
    feature = example.features.feature.get(name)
    kind = feature.WhichOneof("kind") if feature is not None else None
    return list(getattr(feature, kind).value) if kind else []


def set_values(example, name: str, new_values: Sequence) -> None:
    """Sets a feature from a non-empty list of ints, floats or bytes (the first element decides)."""
    feature = example.features.feature[name]
    first = new_values[0]
    if isinstance(first, bytes):
        feature.bytes_list.value[:] = new_values
    elif isinstance(first, (int, np.integer)):
        feature.int64_list.value[:] = new_values
    else:
        feature.float_list.value[:] = new_values


def serialize(feature_lists: Mapping[str, Sequence]) -> bytes:
    """A serialized tf.Example from {name: values}; names with no values are left out."""
    example = Example()
    for name, feature_values in feature_lists.items():
        if len(feature_values):
            set_values(example, name, feature_values)
    return example.SerializeToString()
