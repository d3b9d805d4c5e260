"""TFX Trainer module of the multitask ranker (`run_fn`), and its SavedModel export.

Reads Transform's output (transformed Examples + the transform graph), trains
`MultitaskRanker`, and exports a SavedModel with two signatures:

- `serving_default(examples)`: serialized raw tf.Examples (TFMA, TF Serving
  classify/regress); the raw features are parsed and transformed in the graph;
- `predict(<raw features>)`: one dense `(batch,)` tensor per raw feature the
  ranker reads (item_genres as a '|'-separated string), for JSON REST.

Both return `score`, `click_probability`, `like_probability`,
`watch_time_s`, `rating`. **Position is never read by either signature**
(it is dropped before the transform), so a request's position, present,
absent or any value, cannot change a score: serving scores unbiased relevance.

Use in a pipeline:
    Trainer(module_file=None, run_fn="watchnext.models.ranker.trainer.run_fn",
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            custom_config={"ranker": {...RankerConfig fields}}, ...)
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import tensorflow as tf
import tensorflow_transform as tft

from watchnext.models import features as F
from watchnext.models.ranker import config as C
from watchnext.models.ranker.model import MultitaskRanker
from watchnext.models.ranker.preprocessing import LABEL_KEYS, SERVED_RAW_FEATURES, vocabulary_name

TASK_LABELS = {
    C.TASK_CLICK: F.CLICK,
    C.TASK_WATCH_TIME: F.WATCH_TIME_LOG1P,
    C.TASK_LIKE: F.LIKE,
    C.TASK_RATING: F.RATING,
}
SHUFFLE_BUFFER = 20_000


@keras.saving.register_keras_serializable(package="watchnext")
def masked_squared_error(y_true: Any, y_pred: Any) -> Any:
    """Mean squared error over examples whose label is > 0 (0 = missing rating)."""
    y_true = keras.ops.reshape(keras.ops.cast(y_true, "float32"), (-1,))
    y_pred = keras.ops.reshape(y_pred, (-1,))
    mask = keras.ops.cast(y_true > 0.0, "float32")
    return keras.ops.sum(mask * keras.ops.square(y_true - y_pred)) / keras.ops.maximum(
        keras.ops.sum(mask), 1.0
    )


def vocabulary_sizes(tf_transform_output: tft.TFTransformOutput) -> dict[str, int]:
    """Table rows: vocabulary + 1 OOV row for ids; vocabulary + 1 padding row for genres."""
    return {
        name: tf_transform_output.vocabulary_size_by_name(vocabulary_name(name)) + 1
        for name in (F.USER_ID, F.ITEM_ID, F.ITEM_GENRES)
    }


def make_dataset(
    file_patterns: list[str] | str,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    shuffle: bool,
    repeat: bool = True,
    seed: int = 7,
) -> tf.data.Dataset:
    """(features, labels) batches of transformed examples; labels keyed by task."""
    files = (
        tf.io.gfile.glob(file_patterns)
        if isinstance(file_patterns, str)
        else [f for pattern in file_patterns for f in tf.io.gfile.glob(pattern)]
    )
    if not files:
        raise FileNotFoundError(f"no transformed examples match {file_patterns}")
    records = tf.data.TFRecordDataset(sorted(files), compression_type="GZIP")
    if shuffle:
        records = records.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    spec = tf_transform_output.transformed_feature_spec()

    def split_labels(serialized: tf.Tensor):
        parsed = tf.io.parse_example(serialized, spec)
        labels = {task: tf.reshape(parsed.pop(key), [-1]) for task, key in TASK_LABELS.items()}
        return parsed, labels

    return records.batch(batch_size).map(split_labels, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def compile_ranker(model: MultitaskRanker) -> MultitaskRanker:
    config = model.config
    losses = {
        C.TASK_CLICK: keras.losses.BinaryCrossentropy(),
        C.TASK_LIKE: keras.losses.BinaryCrossentropy(),
        C.TASK_WATCH_TIME: keras.losses.MeanSquaredError(),
        C.TASK_RATING: masked_squared_error,
    }
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=losses,
        loss_weights={task: config.loss_weight(task) for task in losses},
    )  # per-task losses are logged; quality metrics are TFMA's and the benchmark's
    return model


def train_ranker(
    config: C.RankerConfig,
    tf_transform_output: tft.TFTransformOutput,
    train_files: list[str] | str,
    eval_files: list[str] | str | None,
    train_steps: int,
    eval_steps: int = 0,
    verbose: int = 2,
) -> MultitaskRanker:
    """Builds, compiles and trains a ranker; the same path for the Trainer and the benchmarks."""
    keras.utils.set_random_seed(config.seed)
    model = compile_ranker(MultitaskRanker(config, vocabulary_sizes(tf_transform_output)))
    train = make_dataset(train_files, tf_transform_output, config.batch_size, shuffle=True, seed=config.seed)
    validation = None
    if eval_files and eval_steps:
        validation = make_dataset(eval_files, tf_transform_output, config.batch_size, shuffle=False)
    model.fit(
        train,
        steps_per_epoch=train_steps,
        epochs=1,
        validation_data=validation,
        validation_steps=eval_steps or None,
        shuffle=False,  # the dataset shuffles
        verbose=verbose,
    )
    return model


def _serving_outputs(model: MultitaskRanker, transformed: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    transformed = {k: v for k, v in transformed.items() if k not in LABEL_KEYS and k != F.POSITION}
    outputs = model(transformed, training=False)
    return {
        "score": outputs["score"],
        "click_probability": outputs[C.TASK_CLICK],
        "like_probability": outputs[C.TASK_LIKE],
        "watch_time_s": tf.math.expm1(tf.maximum(outputs[C.TASK_WATCH_TIME], 0.0)),
        "rating": outputs[C.TASK_RATING],
    }


def served_feature_spec(tf_transform_output: tft.TFTransformOutput) -> dict[str, Any]:
    """The raw feature spec the signatures parse: the served features (never labels or position)."""
    spec = tf_transform_output.raw_feature_spec()
    return {name: spec[name] for name in SERVED_RAW_FEATURES}


def _as_raw_tensor(name: str, value: tf.Tensor, spec: Any) -> Any:
    """A dense `(batch,)` request tensor in the form the transform graph expects for `spec`."""
    if isinstance(spec, tf.io.FixedLenFeature):
        return tf.reshape(value, [-1, *spec.shape]) if spec.shape else value
    if name == F.ITEM_GENRES:
        return tf.strings.split(value, F.MULTI_VALUE_SEPARATOR).to_sparse()
    batch = tf.shape(value, out_type=tf.int64)[0]
    indices = tf.stack([tf.range(batch), tf.zeros([batch], tf.int64)], axis=1)
    return tf.SparseTensor(indices, value, tf.stack([batch, tf.constant(1, tf.int64)]))


def export_ranker(
    model: MultitaskRanker, tf_transform_output: tft.TFTransformOutput, export_dir: str
) -> None:
    """Writes the SavedModel with `serving_default` and `predict` (see the module docstring)."""
    tft_layer = tf_transform_output.transform_features_layer()
    spec = served_feature_spec(tf_transform_output)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(tft_layer)

    def serve_examples(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = tf.io.parse_example(serialized, spec)
        return _serving_outputs(model, tft_layer(raw))

    archive.add_endpoint(
        name="serving_default",
        fn=serve_examples,
        input_signature=[tf.TensorSpec([None], tf.string, name="examples")],
    )

    names = sorted(spec)

    def serve_features(*values: tf.Tensor) -> dict[str, tf.Tensor]:
        raw = {name: _as_raw_tensor(name, v, spec[name]) for name, v in zip(names, values, strict=True)}
        return _serving_outputs(model, tft_layer(raw))

    archive.add_endpoint(
        name="predict",
        fn=serve_features,
        input_signature=[
            tf.TensorSpec([None], tf.string if n == F.ITEM_GENRES else spec[n].dtype, name=n) for n in names
        ],
    )
    archive.write_out(export_dir, verbose=False)


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point."""
    custom = fn_args.custom_config or {}
    config = C.RankerConfig.from_dict(custom.get("ranker", {}))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    model = train_ranker(
        config,
        tf_transform_output,
        fn_args.train_files,
        fn_args.eval_files,
        train_steps=fn_args.train_steps,
        eval_steps=fn_args.eval_steps,
    )
    export_ranker(model, tf_transform_output, fn_args.serving_model_dir)
    logging.info("ranker trainer: SavedModel written to %s", fn_args.serving_model_dir)
