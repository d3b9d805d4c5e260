"""Reading and writing TFX Examples artifacts (gzipped TFRecords, one folder per split) in Beam."""

from __future__ import annotations

import os

import apache_beam as beam
import numpy as np
from tfx import types
from tfx.types import artifact_utils

DATA_FILE_PREFIX = "data_tfrecord"


def split_names(examples: types.Artifact) -> list[str]:
    return artifact_utils.decode_split_names(examples.split_names)


def read_split(pipeline: beam.Pipeline, examples: types.Artifact, split: str) -> beam.PCollection:
    """Serialized tf.Examples of one split."""
    pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*")
    return pipeline | f"Read[{split}]" >> beam.io.ReadFromTFRecord(pattern)


def write_split(records: beam.PCollection, examples: types.Artifact, split: str, label: str = "") -> None:
    """Writes serialized records under the artifact's split folder (split_names must be set)."""
    prefix = os.path.join(artifact_utils.get_split_uri([examples], split), DATA_FILE_PREFIX)
    _ = records | f"Write[{label}{split}]" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=".gz")


def mark_tf_example_payload(examples: types.Artifact) -> None:
    examples.set_string_custom_property("payload_format", "FORMAT_TF_EXAMPLE")


def scalar(example, name: str, default=None):
    """The first value of a tf.Example feature, or `default` when the feature is absent."""
    feature = example.features.feature.get(name)
    if feature is None:
        return default
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value if kind else ()
    return values[0] if values else default


def set_values(example, name: str, values) -> None:
    """Sets a feature from a non-empty list of ints, floats or bytes (the first element decides)."""
    feature = example.features.feature[name]
    first = values[0]
    if isinstance(first, bytes):
        feature.bytes_list.value[:] = values
    elif isinstance(first, (int, np.integer)):
        feature.int64_list.value[:] = values
    else:
        feature.float_list.value[:] = values


def serialize_example(feature_lists: dict[str, list]) -> bytes:
    """A serialized tf.Example from {name: values}; names with no values are left out."""
    import tensorflow as tf

    example = tf.train.Example()
    for name, values in feature_lists.items():
        if len(values):
            set_values(example, name, values)
    return example.SerializeToString()
