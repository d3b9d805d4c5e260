"""A small SavedModel with the ranker's serving signatures, for the serving tests and benchmark.

`export_toy_ranker(export_dir)` writes, in about a second, a `tf.Module` whose signatures
mimic `models/ranker/trainer.export_ranker`:

- `serving_default(examples: string[None])`: serialized tf.Examples, parsed with a default for
  every feature (so any feature may be absent, and unknown features such as `position` are
  never read);
- `predict(<one [None] tensor per raw feature>)`: the 15 features of
  `models/ranker/preprocessing.SERVED_RAW_FEATURES` with the ranker's dtypes (no `position`);

both returning `score`, `click_probability`, `like_probability`, `watch_time_s`, `rating`
(float32 `[None]`). Ids go through `tf.lookup.StaticVocabularyTable`s with one OOV bucket, so
unknown users/items get the OOV embedding, as the real ranker's vocabularies do. `bias` shifts
every logit: two exports with different biases give different scores (tests tell versions apart).
The weights are random (seeded): the scores mean nothing.
"""

from __future__ import annotations

import os

import tensorflow as tf

from watchnext.models import features as F

STRING_FEATURES = (F.USER_ID, F.ITEM_ID, F.ITEM_GENRES, F.DEVICE, F.SURFACE)
INT_FEATURES = (
    F.HOUR_OF_DAY,
    F.ITEM_EXPOSURE_COUNT,
    F.ITEM_IS_NEW,
    F.USER_IS_NEW,
    F.USER_VIEW_COUNT,
    F.USER_VIEW_COUNT_BUCKET,
)
FLOAT_FEATURES = (
    F.ITEM_AGE_DAYS,
    F.ITEM_DURATION_S,
    F.USER_HOURS_SINCE_FIRST_SEEN,
    F.USER_RECENT_CLICK_RATE,
)
FEATURE_DTYPES: dict[str, tf.DType] = {
    **dict.fromkeys(STRING_FEATURES, tf.string),
    **dict.fromkeys(INT_FEATURES, tf.int64),
    **dict.fromkeys(FLOAT_FEATURES, tf.float32),
}
FEATURE_NAMES = tuple(sorted(FEATURE_DTYPES))
OUTPUT_NAMES = ("click_probability", "like_probability", "rating", "score", "watch_time_s")
USERS = tuple(f"u{i}" for i in range(50))
ITEMS = tuple(f"i{i}" for i in range(200))
DIM = 8


def _default(dtype: tf.DType):
    return "" if dtype == tf.string else 0


class ToyRanker(tf.Module):
    """Embeddings of users, items, devices and genres hashed, plus a linear term on the numbers."""

    def __init__(self, seed: int = 0, bias: float = 0.0):
        super().__init__(name="toy_ranker")
        rng = tf.random.Generator.from_seed(seed)
        self.users = tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(list(USERS), tf.range(len(USERS), dtype=tf.int64)), 1
        )
        self.items = tf.lookup.StaticVocabularyTable(
            tf.lookup.KeyValueTensorInitializer(list(ITEMS), tf.range(len(ITEMS), dtype=tf.int64)), 1
        )
        self.user_embedding = tf.Variable(rng.normal([len(USERS) + 1, DIM]))
        self.item_embedding = tf.Variable(rng.normal([len(ITEMS) + 1, DIM]))
        self.context_embedding = tf.Variable(rng.normal([64, DIM]) * 0.3)
        self.numeric_weights = tf.Variable(rng.normal([len(INT_FEATURES) + len(FLOAT_FEATURES), 4]) * 0.1)
        self.bias = tf.Variable(bias)

    def _outputs(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        user = tf.gather(self.user_embedding, self.users.lookup(features[F.USER_ID]))
        item = tf.gather(self.item_embedding, self.items.lookup(features[F.ITEM_ID]))
        context_keys = tf.strings.join(
            [features[F.DEVICE], features[F.SURFACE], features[F.ITEM_GENRES]], separator="/"
        )
        context = tf.gather(self.context_embedding, tf.strings.to_hash_bucket_fast(context_keys, 64))
        numbers = tf.stack(
            [
                tf.math.log1p(tf.abs(tf.cast(features[name], tf.float32)))
                for name in INT_FEATURES + FLOAT_FEATURES
            ],
            axis=1,
        )
        linear = tf.matmul(numbers, self.numeric_weights)  # (batch, 4)
        logit = tf.reduce_sum(user * (item + context), axis=1) / DIM + linear[:, 0] + self.bias
        like_logit = logit + linear[:, 1] - 1.0
        return {
            "score": tf.sigmoid(logit) * (1.0 + tf.sigmoid(like_logit)),
            "click_probability": tf.sigmoid(logit),
            "like_probability": tf.sigmoid(like_logit),
            "watch_time_s": tf.exp(tf.clip_by_value(linear[:, 2] + 4.0, 0.0, 8.0)),
            "rating": 1.0 + 4.0 * tf.sigmoid(linear[:, 3] + logit),
        }

    def parse_spec(self) -> dict[str, tf.io.FixedLenFeature]:
        return {
            name: tf.io.FixedLenFeature([], dtype, default_value=_default(dtype))
            for name, dtype in FEATURE_DTYPES.items()
        }


def export_toy_ranker(export_dir: str, seed: int = 0, bias: float = 0.0) -> str:
    """Writes the toy ranker SavedModel to `export_dir` (created); returns `export_dir`."""
    model = ToyRanker(seed=seed, bias=bias)
    spec = model.parse_spec()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        return model._outputs(tf.io.parse_example(examples, spec))

    @tf.function(input_signature=[tf.TensorSpec([None], FEATURE_DTYPES[n], name=n) for n in FEATURE_NAMES])
    def serve_features(*values):
        return model._outputs(dict(zip(FEATURE_NAMES, values, strict=True)))

    os.makedirs(os.path.dirname(os.path.abspath(export_dir)), exist_ok=True)
    tf.saved_model.save(
        model,
        export_dir,
        signatures={
            "serving_default": serve_examples.get_concrete_function(),
            "predict": serve_features.get_concrete_function(),
        },
    )
    return export_dir


def candidate_features(num_candidates: int, user_id: str = "u1", seed: int = 0) -> list[dict]:
    """`num_candidates` JSON-ready feature dicts (one per item) with every `predict` input."""
    rows = []
    for i in range(num_candidates):
        k = seed + i
        rows.append(
            {
                F.USER_ID: user_id,
                F.ITEM_ID: ITEMS[k % len(ITEMS)],
                F.ITEM_GENRES: ("Comedy|Drama", "Action", "")[k % 3],
                F.DEVICE: ("android", "ios", "web", "tv")[k % 4],
                F.SURFACE: ("feed", "search")[k % 2],
                F.HOUR_OF_DAY: k % 24,
                F.ITEM_EXPOSURE_COUNT: 10 * k,
                F.ITEM_IS_NEW: k % 2,
                F.USER_IS_NEW: 0,
                F.USER_VIEW_COUNT: 7,
                F.USER_VIEW_COUNT_BUCKET: 2,
                F.ITEM_AGE_DAYS: 1.5 * k,
                F.ITEM_DURATION_S: 60.0 + k,
                F.USER_HOURS_SINCE_FIRST_SEEN: 100.0,
                F.USER_RECENT_CLICK_RATE: 0.25,
            }
        )
    return rows
