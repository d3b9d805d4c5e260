"""TFX Trainer module for the baseline click model (`run_fn`).

Reads the raw-log Examples written by LogExampleGen, trains
`build_click_model`, and exports a SavedModel whose `serving_default`
signature takes serialized tf.Examples (what TFMA and TF Serving's
classify/regress APIs send) and returns `click_probability`.

Use in a pipeline:
    Trainer(run_fn="watchnext.models.baseline.trainer.run_fn",
            examples=..., schema=..., train_args=..., eval_args=...)
"""

from __future__ import annotations

import logging

import keras
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from watchnext.models import features
from watchnext.models.baseline.model import (
    CATEGORICAL_INPUTS,
    NUMERIC_INPUTS,
    OUTPUT_NAME,
    ClickModelConfig,
    build_click_model,
)

LABEL = features.CLICK
DEFAULT_BATCH_SIZE = 256

# Every input has a default, so a request may leave any feature out.
FEATURE_SPEC = {
    **{name: tf.io.FixedLenFeature([], tf.string, default_value="") for name in CATEGORICAL_INPUTS},
    **{name: tf.io.FixedLenFeature([], tf.float32, default_value=0.0) for name in NUMERIC_INPUTS},
}
LABEL_SPEC = {LABEL: tf.io.FixedLenFeature([], tf.int64)}


def parse_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    return tf.io.parse_example(serialized, FEATURE_SPEC)


def make_dataset(file_patterns: list[str], batch_size: int, shuffle: bool) -> tf.data.Dataset:
    files = tf.data.Dataset.list_files(file_patterns, shuffle=shuffle, seed=7)
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if shuffle:
        records = records.shuffle(10_000, seed=7, reshuffle_each_iteration=True)
    records = records.repeat()  # train_steps / eval_steps decide how much is read
    spec = {**FEATURE_SPEC, **LABEL_SPEC}

    def split_label(serialized: tf.Tensor):
        parsed = tf.io.parse_example(serialized, spec)
        label = tf.cast(parsed.pop(LABEL), tf.float32)
        return parsed, label

    return records.batch(batch_size).map(split_label, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def export_serving_model(model: keras.Model, export_dir: str) -> None:
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(parse_examples(serialized), training=False)}

    archive.add_endpoint(
        name="serving_default",
        fn=serve_examples,
        input_signature=[tf.TensorSpec([None], tf.string, name="examples")],
    )
    archive.write_out(export_dir, verbose=False)


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point."""
    keras.utils.set_random_seed(int((fn_args.custom_config or {}).get("seed", 1)))
    config = ClickModelConfig(**(fn_args.custom_config or {}).get("model", {}))
    batch_size = int((fn_args.custom_config or {}).get("batch_size", DEFAULT_BATCH_SIZE))
    train = make_dataset(fn_args.train_files, batch_size, shuffle=True)
    evaluation = make_dataset(fn_args.eval_files, batch_size, shuffle=False)
    model = build_click_model(config)
    history = model.fit(
        train,
        steps_per_epoch=fn_args.train_steps,
        validation_data=evaluation,
        validation_steps=fn_args.eval_steps,
        epochs=1,
        verbose=2,
    )
    logging.info("baseline trainer: final metrics %s", {k: v[-1] for k, v in history.history.items()})
    export_serving_model(model, fn_args.serving_model_dir)
    logging.info("baseline trainer: SavedModel written to %s", fn_args.serving_model_dir)
