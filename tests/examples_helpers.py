"""Helpers for tests that need raw-log Examples artifacts on disk."""

from __future__ import annotations

import os

import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from watchnext.components import tf_example
from watchnext.models import features

HOUR = 3600
DAY = 86400
T0 = 1_700_000_000


def raw_example(user: str, item: str, ts: int, click: int, first_seen: int = T0 - 2 * DAY) -> bytes:
    row = {
        features.USER_ID: [user.encode()],
        features.ITEM_ID: [item.encode()],
        features.TIMESTAMP: [ts],
        features.POSITION: [1],
        features.DEVICE: [b"ios"],
        features.SURFACE: [b"feed"],
        features.USER_FIRST_SEEN_TS: [first_seen],
        features.ITEM_UPLOAD_TS: [T0 - DAY],
        features.CLICK: [click],
    }
    return tf_example.serialize(row)


def write_examples_artifact(root: str, splits: dict[str, list[bytes]]) -> standard_artifacts.Examples:
    artifact = standard_artifacts.Examples()
    artifact.uri = root
    artifact.split_names = artifact_utils.encode_split_names(list(splits))
    for split, records in splits.items():
        directory = artifact_utils.get_split_uri([artifact], split)
        os.makedirs(directory)
        with tf.io.TFRecordWriter(os.path.join(directory, "data.gz"), options="GZIP") as writer:
            for record in records:
                writer.write(record)
    return artifact
