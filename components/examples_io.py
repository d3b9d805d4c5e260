"""Reading and writing TFX Examples artifacts (gzipped TFRecords, one folder per split) in Beam."""

from __future__ import annotations

import os

import apache_beam as beam
from tfx import types
from tfx.types import artifact_utils

DATA_FILE_PREFIX = "data_tfrecord"


def split_names(examples: types.Artifact) -> list[str]:
    return artifact_utils.decode_split_names(examples.split_names)


def read_split(
    pipeline: beam.Pipeline, examples: types.Artifact, split: str, label: str = ""
) -> beam.PCollection:
    """Serialized tf.Examples of one split."""
    pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*")
    return pipeline | f"Read[{label}{split}]" >> beam.io.ReadFromTFRecord(pattern)


def read_all_splits(pipeline: beam.Pipeline, examples: types.Artifact, label: str = "") -> beam.PCollection:
    """Serialized tf.Examples of every split, read by one transform.

    One read of all the files instead of a Flatten of one read per split: the local
    (FnApi) runner materializes a Flatten's inputs in its own memory, every element of them.
    """
    patterns = [
        os.path.join(artifact_utils.get_split_uri([examples], split), "*") for split in split_names(examples)
    ]
    return (
        pipeline
        | f"SplitPatterns[{label}]" >> beam.Create(patterns)
        | f"ReadAllSplits[{label}]" >> beam.io.ReadAllFromTFRecord()
    )


def write_split(records: beam.PCollection, examples: types.Artifact, split: str, label: str = "") -> None:
    """Writes serialized records under the artifact's split folder (split_names must be set)."""
    prefix = os.path.join(artifact_utils.get_split_uri([examples], split), DATA_FILE_PREFIX)
    _ = records | f"Write[{label}{split}]" >> beam.io.WriteToTFRecord(prefix, file_name_suffix=".gz")


def mark_tf_example_payload(examples: types.Artifact) -> None:
    examples.set_string_custom_property("payload_format", "FORMAT_TF_EXAMPLE")
