"""TFX Transform step of the ranker: raw impressions -> model-ready tensors.

Inputs are FeatureGen's impressions (`schemas/impressions`); outputs, all dense
`(batch,)` or `(batch, MAX_GENRES)`:

    user_id, item_id        vocabulary index (train split, top_k), out-of-vocabulary -> the last index
    item_genre_ids          genre vocabulary index + 1 of the first MAX_GENRES genres, 0 = padding
    device, surface         index in features.DEVICES / SURFACES, unknown -> len(...)
    position                1..NUM_POSITIONS, 0 = missing (larger positions -> NUM_POSITIONS)
    hour_of_day, user_view_count_bucket, user_is_new, item_is_new    as FeatureGen wrote them
    item_age_bucket         item_age_days bucketized at AGE_BOUNDARIES_DAYS
    item_duration_s, user_hours_since_first_seen, item_exposure_count, user_view_count
                            z-score of log1p(value) (missing -> 0 before log1p)
    user_recent_click_rate  as is
    labels: click, like (0 when missing), watch_time_log1p = log1p(watch_time_s),
            rating (0 = missing)

Every optional input may be absent from a request: it gets its default here,
so the exported signatures accept examples without it.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from watchnext.models import features as F

NUM_POSITIONS = 20
MAX_GENRES = 3
AGE_BOUNDARIES_DAYS = (1.0, 2.0, 7.0, 30.0, 90.0, 365.0)
USER_VOCAB_TOP_K = 200_000
ITEM_VOCAB_TOP_K = 100_000

# Raw features the ranker reads at serving time (labels and position never are).
SERVED_RAW_FEATURES = (
    F.USER_ID,
    F.ITEM_ID,
    F.ITEM_GENRES,
    F.DEVICE,
    F.SURFACE,
    F.HOUR_OF_DAY,
    F.ITEM_AGE_DAYS,
    F.ITEM_DURATION_S,
    F.ITEM_EXPOSURE_COUNT,
    F.ITEM_IS_NEW,
    F.USER_VIEW_COUNT,
    F.USER_VIEW_COUNT_BUCKET,
    F.USER_HOURS_SINCE_FIRST_SEEN,
    F.USER_RECENT_CLICK_RATE,
    F.USER_IS_NEW,
)
LABEL_KEYS = (F.CLICK, F.LIKE, F.WATCH_TIME_LOG1P, F.RATING)
RAW_LABELS = (F.CLICK, F.LIKE, F.WATCH_TIME_S, F.RATING)
LOG_Z_FEATURES = (F.ITEM_DURATION_S, F.USER_HOURS_SINCE_FIRST_SEEN, F.ITEM_EXPOSURE_COUNT, F.USER_VIEW_COUNT)
PASS_THROUGH_INT = (F.HOUR_OF_DAY, F.USER_VIEW_COUNT_BUCKET, F.USER_IS_NEW, F.ITEM_IS_NEW)


def vocabulary_name(feature: str) -> str:
    return f"{feature}_vocab"


def _dense(value, default):
    """A `(batch,)` dense tensor from a dense `(batch, 1)` or sparse `(batch, 1)` input."""
    if isinstance(value, tf.SparseTensor):
        shape = tf.stack([value.dense_shape[0], tf.constant(1, tf.int64)])
        value = tf.sparse.to_dense(tf.sparse.reset_shape(value, shape), default_value=default)
    elif isinstance(value, tf.RaggedTensor):
        value = value.to_tensor(default_value=default, shape=[None, 1])
    return tf.reshape(value, [-1])


def _enum_index(value: tf.Tensor, domain: tuple[str, ...]) -> tf.Tensor:
    matches = tf.equal(tf.expand_dims(value, -1), tf.constant(domain))
    found = tf.reduce_any(matches, axis=-1)
    return tf.where(found, tf.argmax(tf.cast(matches, tf.int32), axis=-1), len(domain))


def _genre_ids(genres) -> tf.Tensor:
    if not isinstance(genres, tf.SparseTensor):
        genres = tf.sparse.from_dense(genres)
    ids = tft.compute_and_apply_vocabulary(genres, vocab_filename=vocabulary_name(F.ITEM_GENRES))
    shifted = tf.SparseTensor(ids.indices, ids.values + 1, ids.dense_shape)
    width = tf.maximum(genres.dense_shape[1], MAX_GENRES)
    dense = tf.sparse.to_dense(tf.sparse.reset_shape(shifted, tf.stack([genres.dense_shape[0], width])))
    return tf.reshape(dense[:, :MAX_GENRES], [-1, MAX_GENRES])


def preprocessing_fn(inputs: dict) -> dict:
    """The Transform entry point (`Transform(preprocessing_fn=...)`)."""
    out = {
        F.USER_ID: tft.compute_and_apply_vocabulary(
            _dense(inputs[F.USER_ID], ""),
            top_k=USER_VOCAB_TOP_K,
            num_oov_buckets=1,
            vocab_filename=vocabulary_name(F.USER_ID),
        ),
        F.ITEM_ID: tft.compute_and_apply_vocabulary(
            _dense(inputs[F.ITEM_ID], ""),
            top_k=ITEM_VOCAB_TOP_K,
            num_oov_buckets=1,
            vocab_filename=vocabulary_name(F.ITEM_ID),
        ),
        F.ITEM_GENRE_IDS: _genre_ids(inputs[F.ITEM_GENRES]),
        F.DEVICE: _enum_index(_dense(inputs[F.DEVICE], ""), F.DEVICES),
        F.SURFACE: _enum_index(_dense(inputs[F.SURFACE], ""), F.SURFACES),
        F.POSITION: tf.clip_by_value(_dense(inputs[F.POSITION], 0), 0, NUM_POSITIONS),
        F.ITEM_AGE_BUCKET: tf.cast(
            tf.raw_ops.Bucketize(
                input=tf.cast(_dense(inputs[F.ITEM_AGE_DAYS], 0.0), tf.float32),
                boundaries=list(AGE_BOUNDARIES_DAYS),
            ),
            tf.int64,
        ),
        F.USER_RECENT_CLICK_RATE: _dense(inputs[F.USER_RECENT_CLICK_RATE], 0.0),
    }
    for name in PASS_THROUGH_INT:
        out[name] = tf.cast(_dense(inputs[name], 0), tf.int64)
    for name in LOG_Z_FEATURES:
        raw = tf.cast(_dense(inputs[name], 0), tf.float32)
        out[name] = tft.scale_to_z_score(tf.math.log1p(tf.maximum(raw, 0.0)))
    out[F.CLICK] = tf.cast(_dense(inputs[F.CLICK], 0), tf.float32)
    out[F.LIKE] = tf.cast(_dense(inputs[F.LIKE], 0), tf.float32)
    out[F.WATCH_TIME_LOG1P] = tf.math.log1p(tf.maximum(_dense(inputs[F.WATCH_TIME_S], 0.0), 0.0))
    out[F.RATING] = _dense(inputs[F.RATING], 0.0)
    return out
