"""TFX Trainer module of the HSTU retrieval model (`run_fn`), fed by SequenceGen's `retrieval_sequences`.

Data: each tf.Example (schemas/retrieval_sequences) holds a user's `history_item_ids` (oldest first)
and the `target_item_id` that follows. A train example is a user's sequence minus its last item;
with s = history + [target], every next-item step is learned: the most recent max_len + 1 items
of s form a window, inputs = window[:-1], targets = window[1:] (right-padded with 0 to max_len),
trained with `SequentialRetrievalModel`'s sampled softmax (`retrieval.py`).

Item vocabulary: built in `run_fn` from the train split's item ids (history + target) with one
tf.data pass, sorted by decreasing frequency then increasing id. Index 0 is padding, 1..N the
vocabulary's items (line i of the asset file `item_vocabulary.txt` is index i + 1) and N + 1 the
out-of-vocabulary item: the model is a `SequentialRetrievalModel(num_items=N + 1)` whose item
N + 1 is "unknown". Unknown ids (and ids with a line break, which the text asset cannot hold) map
to N + 1; "" is padding everywhere (dropped from histories). The OOV item is never ranked,
retrieved or counted among "all items" (1..N), but it does take part as a random negative in
training and as a history token at serving time.

SavedModel signatures (`export_hstu`), no timestamps read (the time bias must be off):

- `serving_default(examples: string[None])`: serialized retrieval-sequence tf.Examples (history +
  target) -> float[None] each of `target_rank`, `hit_at_10`, `hit_at_50`, `hit_at_200`,
  `ndcg_at_10`, `ndcg_at_50`, `ndcg_at_200`. The user vector of the history (most recent max_len
  items) scores all N items by cosine; target_rank = number of other items scoring >= the target
  (ties count against it, seen items are not excluded: `evaluate_full_ranking`'s "all_items" ranking);
  an OOV target gets rank N and no hit. hit_at_K = [rank < K], ndcg_at_K = hit_at_K / log2(rank + 2),
  so TFMA's MeanPrediction of these outputs is HR@K / NDCG@K.
- `retrieve(history_item_ids: string[None, None], k: int32[])`: histories right-padded with "" ->
  `item_ids` string[None, k'] and `scores` float[None, k'] (k' = min(max(k, 0), N)): brute-force
  top-k over all N item vectors, best first.
- `score_candidates(history_item_ids: string[None], candidate_item_ids: string[None])`: one history
  and m candidates -> `scores` float[None] (m): M-FALCON (`mfalcon.py`): the history is encoded
  once, candidates are scored in micro-batches, each seeing the history and itself only; equal
  (1e-5) to one full forward per candidate (`naive_scores`). An unknown (or "") candidate is scored
  as the OOV item.

Use in a pipeline:
    Trainer(module_file=None, run_fn="watchnext.models.hstu.trainer.run_fn",
            examples=sequence_gen.outputs["retrieval_sequences"],
            train_args=TrainArgs(splits=["train"], num_steps=...),
            eval_args=EvalArgs(splits=["test"], num_steps=0),
            custom_config={"hstu": {...EncoderConfig fields}, "retrieval": {...RetrievalConfig
                           fields}, "seed": 0, "micro_batch_size": 128})

Example (outside TFX):
    config = trainer_config({"hstu": {"max_len": 50}, "retrieval": {"epochs": 20}})
    model, vocabulary = train_hstu(["/data/Split-train/*.gz"], config, vocabulary_dir="/tmp/vocab")
    export_hstu(model, vocabulary, "/models/hstu/1")
    served = tf.saved_model.load("/models/hstu/1")
    served.signatures["retrieve"](history_item_ids=tf.constant([[b"m1", b"m7", b""]]), k=tf.constant(10))
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import keras
import tensorflow as tf

from watchnext.models import features as F
from watchnext.models.hstu.encoder import HSTU_CONFIG, EncoderConfig, SequentialEncoder
from watchnext.models.hstu.retrieval import DEFAULT_KS, RetrievalConfig, SequentialRetrievalModel

VOCABULARY_FILE = "item_vocabulary.txt"
DEFAULT_EPOCHS = 10
DEFAULT_MICRO_BATCH_SIZE = 128
SHUFFLE_BUFFER = 100_000
VOCABULARY_PASS_BATCH = 1024

PARSE_SPEC = {
    F.HISTORY_ITEM_IDS: tf.io.RaggedFeature(tf.string),
    F.TARGET_ITEM_ID: tf.io.RaggedFeature(tf.string),
}


# -- configuration -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """What `run_fn` reads from custom_config (see `trainer_config`)."""

    encoder: EncoderConfig
    retrieval: RetrievalConfig
    seed: int = 0
    micro_batch_size: int = DEFAULT_MICRO_BATCH_SIZE


def trainer_config(custom_config: dict[str, Any] | None) -> TrainerConfig:
    """custom_config {"hstu": {EncoderConfig fields}, "retrieval": {RetrievalConfig fields}, "seed": int,
    "micro_batch_size": int} -> TrainerConfig.

    "hstu" overrides `HSTU_CONFIG` (block_type="sasrec" gives SASRec); "retrieval" overrides
    `RetrievalConfig(epochs=DEFAULT_EPOCHS)`; "seed" (default 0) seeds Keras/TF/NumPy and is the
    retrieval seed unless "retrieval" sets one. Other top-level keys are ignored (with a warning);
    unknown fields inside "hstu" / "retrieval" raise TypeError.
    """
    custom = dict(custom_config or {})
    unknown = set(custom) - {"hstu", "retrieval", "seed", "micro_batch_size"}
    if unknown:
        logging.warning("HSTU trainer: ignoring unknown custom_config keys %s", sorted(unknown))
    encoder = dataclasses.replace(HSTU_CONFIG, **dict(custom.get("hstu") or {}))
    if encoder.use_time_bias:
        raise ValueError("the HSTU trainer reads no timestamps: use_time_bias must be False")
    seed = int(custom.get("seed", 0))
    retrieval = RetrievalConfig(
        **{"epochs": DEFAULT_EPOCHS, "seed": seed, **dict(custom.get("retrieval") or {})}
    )
    micro_batch_size = int(custom.get("micro_batch_size", DEFAULT_MICRO_BATCH_SIZE))
    if micro_batch_size < 1:
        raise ValueError("micro_batch_size must be >= 1")
    return TrainerConfig(encoder=encoder, retrieval=retrieval, seed=seed, micro_batch_size=micro_batch_size)


# -- files and vocabulary ----------------------------------------------------------------------------


def list_files(file_patterns: Sequence[str] | str) -> list[str]:
    """Sorted files matching the pattern(s); a directory stands for everything in it."""
    patterns = [file_patterns] if isinstance(file_patterns, str) else list(file_patterns)
    files = set()
    for pattern in patterns:
        if tf.io.gfile.isdir(pattern):
            pattern = os.path.join(pattern, "*")
        files.update(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no retrieval sequence examples match {file_patterns}")
    return sorted(files)


def _records(file_patterns: Sequence[str] | str) -> tf.data.Dataset:
    return tf.data.TFRecordDataset(list_files(file_patterns), compression_type="GZIP")


def count_items(file_patterns: Sequence[str] | str) -> tuple[collections.Counter, int]:
    """(Counter of item ids over histories and targets, number of examples), one tf.data pass."""
    counts: collections.Counter = collections.Counter()
    num_examples = 0

    def flat_ids(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        parsed = tf.io.parse_example(serialized, PARSE_SPEC)
        ids = tf.concat([parsed[F.HISTORY_ITEM_IDS].flat_values, parsed[F.TARGET_ITEM_ID].flat_values], 0)
        unique, _, unique_counts = tf.unique_with_counts(ids)
        return unique, unique_counts, tf.shape(serialized)[0]

    batches = _records(file_patterns).batch(VOCABULARY_PASS_BATCH).map(flat_ids).prefetch(2)
    for unique, unique_counts, size in batches.as_numpy_iterator():
        counts.update(dict(zip(unique.tolist(), unique_counts.tolist(), strict=True)))
        num_examples += int(size)
    return counts, num_examples


def vocabulary_from_counts(counts: collections.Counter) -> list[bytes]:
    """Item ids by decreasing count then increasing id; "" and ids with line breaks left out."""
    items = [(item, n) for item, n in counts.items() if item and b"\n" not in item and b"\r" not in item]
    dropped = len(counts) - len(items) - (1 if b"" in counts else 0)
    if dropped:
        logging.warning("HSTU vocabulary: %d item ids with line breaks map to out-of-vocabulary", dropped)
    return [item for item, _ in sorted(items, key=lambda pair: (-pair[1], pair[0]))]


def write_vocabulary(vocabulary: Iterable[bytes | str], directory: str) -> str:
    """Writes `item_vocabulary.txt` (one id per line; line i = index i + 1) and returns its path."""
    lines = [v.encode() if isinstance(v, str) else bytes(v) for v in vocabulary]
    if not lines:
        raise ValueError("the item vocabulary is empty")
    if any(not line or b"\n" in line or b"\r" in line for line in lines):
        raise ValueError("vocabulary ids must be non-empty and free of line breaks")
    if len(set(lines)) != len(lines):
        raise ValueError("vocabulary ids must be unique")
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, VOCABULARY_FILE)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    return path


class ItemVocabulary(tf.Module):
    """String item ids <-> model ids from the vocabulary file (an asset once saved).

    `lookup`: "" -> 0 (padding), line i -> i + 1, anything else -> num_items + 1 (OOV);
    `item_ids`: model ids 1..num_items -> strings (others -> "").
    """

    def __init__(self, path: str, num_items: int, name: str | None = "item_vocabulary") -> None:
        super().__init__(name=name)
        self.num_items = int(num_items)
        self.oov_id = self.num_items + 1
        self.vocabulary_file = tf.saved_model.Asset(path)
        self.index_table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.vocabulary_file,
                key_dtype=tf.string,
                key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                value_dtype=tf.int64,
                value_index=tf.lookup.TextFileIndex.LINE_NUMBER,
                vocab_size=self.num_items,
            ),
            default_value=-1,
        )
        self.id_table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                self.vocabulary_file,
                key_dtype=tf.int64,
                key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
                value_dtype=tf.string,
                value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
                vocab_size=self.num_items,
            ),
            default_value="",
        )

    @classmethod
    def from_list(cls, vocabulary: Sequence[bytes | str], directory: str) -> ItemVocabulary:
        return cls(write_vocabulary(vocabulary, directory), len(vocabulary))

    def lookup(self, item_ids: tf.Tensor) -> tf.Tensor:
        """int32 model ids of a string tensor (any shape)."""
        index = self.index_table.lookup(item_ids)
        ids = tf.where(index >= 0, index + 1, tf.cast(self.oov_id, tf.int64))
        return tf.cast(tf.where(tf.equal(item_ids, ""), tf.zeros_like(ids), ids), tf.int32)

    def lookup_ragged(self, item_ids: tf.RaggedTensor) -> tf.RaggedTensor:
        """int32 model ids of a ragged string tensor, "" entries dropped (so rows stay contiguous)."""
        kept = tf.ragged.boolean_mask(item_ids, tf.not_equal(item_ids, ""))
        return tf.ragged.map_flat_values(self.lookup, kept)

    def item_ids(self, ids: tf.Tensor) -> tf.Tensor:
        """Strings of model ids (any shape)."""
        return self.id_table.lookup(tf.cast(ids, tf.int64) - 1)


# -- datasets ----------------------------------------------------------------------------------------


def pad_histories(ids: tf.RaggedTensor, max_len: int) -> tf.Tensor:
    """(batch, max_len) int32: each row's most recent max_len ids, right-padded with 0."""
    return tf.cast(ids[:, -max_len:].to_tensor(default_value=0, shape=[None, max_len]), tf.int32)


def stochastic_length_window(window: tf.Tensor, seed: tf.Tensor, max_len: int, alpha: float) -> tf.Tensor:
    """tf version of `retrieval.stochastic_length_subsample` (one window of n + 1 items, int64 seed)."""
    n = tf.size(window) - 1
    keep_count = int(math.floor(max_len ** (alpha / 2.0)))
    seeds = tf.stack([tf.cast(seed, tf.int32), tf.constant(0, tf.int32)])
    n_float = tf.cast(tf.maximum(n, 1), tf.float32)
    cut_probability = 1.0 - float(max_len**alpha) / (n_float * n_float)
    cut = tf.logical_and(n > keep_count, tf.random.stateless_uniform([], seed=seeds) < cut_probability)

    def subsample() -> tf.Tensor:
        noise = tf.random.stateless_uniform([n + 1], seed=seeds + tf.constant([0, 1], tf.int32))
        keep = tf.sort(tf.argsort(noise)[: keep_count + 1])
        return tf.gather(window, keep)

    return tf.cond(cut, subsample, lambda: window)


def make_dataset(
    file_patterns: Sequence[str] | str,
    vocabulary: ItemVocabulary,
    max_len: int,
    batch_size: int,
    shuffle: bool = True,
    repeat: bool = True,
    seed: int = 0,
    stochastic_length: bool = False,
    alpha: float = 1.7,
    shuffle_buffer: int = SHUFFLE_BUFFER,
) -> tf.data.Dataset:
    """(inputs, targets) batches, each (batch_size, max_len) int32, of next-item training windows.

    Per example s = history + [target] (ids via `vocabulary`, "" dropped), window = s[-(max_len + 1):],
    inputs = window[:-1], targets = window[1:], right-padded with 0. With `repeat`, batches are full
    (one static shape); otherwise the last one may be smaller.
    """

    def window(serialized: tf.Tensor) -> tf.Tensor:
        parsed = tf.io.parse_single_example(serialized, PARSE_SPEC)
        ids = tf.concat([parsed[F.HISTORY_ITEM_IDS], parsed[F.TARGET_ITEM_ID]], axis=0)
        ids = vocabulary.lookup(tf.boolean_mask(ids, tf.not_equal(ids, "")))
        return ids[-(max_len + 1) :]

    def inputs_and_targets(w: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        w = w[-(max_len + 1) :]
        pad = [[0, max_len + 1 - tf.size(w)]]
        inputs = tf.pad(w[:-1], pad)
        targets = tf.pad(w[1:], pad)
        inputs.set_shape([max_len])
        targets.set_shape([max_len])
        return inputs, targets

    windows = _records(file_patterns).map(window, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if shuffle:
        windows = windows.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        windows = windows.repeat()
    if stochastic_length:
        windows = tf.data.Dataset.zip((windows, tf.data.Dataset.random(seed=seed))).map(
            lambda w, s: stochastic_length_window(w, s, max_len, alpha), num_parallel_calls=tf.data.AUTOTUNE
        )
    batches = windows.map(inputs_and_targets, num_parallel_calls=tf.data.AUTOTUNE)
    return batches.batch(batch_size, drop_remainder=repeat).prefetch(2)


# -- training ----------------------------------------------------------------------------------------


def training_schedule(
    num_examples: int, batch_size: int, epochs: int, train_steps: int | None
) -> tuple[int, int]:
    """(epochs, steps_per_epoch) for `fit`: whole epochs of ceil(num_examples / batch_size) steps,
    at most `train_steps` steps in all (a bound shorter than one epoch runs that many steps)."""
    steps_per_epoch = max(1, math.ceil(num_examples / batch_size))
    total = max(1, epochs) * steps_per_epoch
    if train_steps:
        total = min(total, int(train_steps))
    if total < steps_per_epoch:
        return 1, total
    return total // steps_per_epoch, steps_per_epoch


def train_hstu(
    train_files: Sequence[str] | str,
    config: TrainerConfig,
    vocabulary_dir: str,
    train_steps: int | None = None,
    eval_files: Sequence[str] | str | None = None,
    eval_steps: int | None = None,
    verbose: int | str = 2,
) -> tuple[SequentialRetrievalModel, ItemVocabulary]:
    """Builds the vocabulary (written under `vocabulary_dir`), then trains the model with `fit`.

    Validation (sampled-softmax loss on the eval split's windows) runs when eval_files and
    eval_steps are given. Returns (model, vocabulary).
    """
    keras.utils.set_random_seed(config.seed)
    counts, num_examples = count_items(train_files)
    vocabulary = ItemVocabulary.from_list(vocabulary_from_counts(counts), vocabulary_dir)
    logging.info("HSTU trainer: %d train examples, %d items", num_examples, vocabulary.num_items)
    rc, max_len = config.retrieval, config.encoder.max_len
    model = SequentialRetrievalModel(vocabulary.num_items + 1, config.encoder, rc)
    model.build()
    model.compile()
    train = make_dataset(
        train_files,
        vocabulary,
        max_len,
        rc.batch_size,
        seed=rc.seed,
        stochastic_length=rc.stochastic_length,
        alpha=rc.stochastic_length_alpha,
        shuffle_buffer=max(1, min(num_examples, SHUFFLE_BUFFER)),
    )
    validation = None
    if eval_files and eval_steps:
        validation = make_dataset(eval_files, vocabulary, max_len, rc.batch_size, shuffle=False)
    epochs, steps_per_epoch = training_schedule(num_examples, rc.batch_size, rc.epochs, train_steps)
    model.fit(
        train,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        validation_data=validation,
        validation_steps=eval_steps or None,
        shuffle=False,  # the dataset shuffles
        verbose=verbose,
    )
    return model, vocabulary


# -- export ------------------------------------------------------------------------------------------


def _as_vocabulary(vocabulary: ItemVocabulary | Sequence[bytes | str], directory: str) -> ItemVocabulary:
    if isinstance(vocabulary, ItemVocabulary):
        return vocabulary
    return ItemVocabulary.from_list(list(vocabulary), directory)


class HSTUServing:
    """The traced computations behind the exported signatures (plain TF around the Keras encoder).

    Args:
        encoder: the trained encoder over num_items = vocabulary.num_items + 1 (the last is OOV).
        vocabulary: its `ItemVocabulary`.
        micro_batch_size: M-FALCON candidates per step.
        ks: cut-offs of the hit/ndcg outputs.
    """

    def __init__(
        self,
        encoder: SequentialEncoder,
        vocabulary: ItemVocabulary,
        micro_batch_size: int = DEFAULT_MICRO_BATCH_SIZE,
        ks: Sequence[int] = DEFAULT_KS,
    ) -> None:
        if encoder.num_items != vocabulary.num_items + 1:
            raise ValueError(
                f"the encoder has {encoder.num_items} items, the vocabulary {vocabulary.num_items} (+1 OOV)"
            )
        if encoder.encoder_config.use_time_bias:
            raise ValueError("the exported signatures read no timestamps: use_time_bias must be False")
        self.encoder, self.vocabulary = encoder, vocabulary
        self.num_items, self.max_len = vocabulary.num_items, encoder.encoder_config.max_len
        self.micro_batch_size, self.ks = int(micro_batch_size), tuple(int(k) for k in ks)

    def user_vectors(self, history_ids: tf.RaggedTensor) -> tf.Tensor:
        """(batch, d) user vectors of ragged int histories (most recent max_len items)."""
        return self.encoder.user_vectors(pad_histories(history_ids, self.max_len))

    def all_item_scores(self, users: tf.Tensor) -> tf.Tensor:
        """(batch, N) cosine of each user vector with items 1..N (the OOV item left out)."""
        items = self.encoder.item_vectors(tf.range(1, self.num_items + 1, dtype=tf.int32))
        return tf.matmul(users, items, transpose_b=True)

    def full_ranking(self, history_ids: tf.RaggedTensor, target_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        """target_rank, hit_at_K, ndcg_at_K (float32 (batch,)) of int targets after int histories."""
        scores = self.all_item_scores(self.user_vectors(history_ids))
        known = tf.logical_and(target_ids >= 1, target_ids <= self.num_items)
        column = tf.clip_by_value(target_ids - 1, 0, self.num_items - 1)
        target_score = tf.gather(scores, column, axis=1, batch_dims=1)
        at_least = tf.reduce_sum(tf.cast(scores >= target_score[:, None], tf.float32), axis=1)
        rank = tf.where(known, at_least - 1.0, float(self.num_items))
        outputs = {"target_rank": rank}
        for k in self.ks:
            hit = tf.cast(tf.logical_and(known, rank < k), tf.float32)
            outputs[f"hit_at_{k}"] = hit
            outputs[f"ndcg_at_{k}"] = hit / (tf.math.log(rank + 2.0) / math.log(2.0))
        return outputs

    def serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(examples, PARSE_SPEC)
        history = self.vocabulary.lookup_ragged(parsed[F.HISTORY_ITEM_IDS])
        target = parsed[F.TARGET_ITEM_ID].to_tensor(default_value="", shape=[None, 1])[:, 0]
        return self.full_ranking(history, self.vocabulary.lookup(target))

    def retrieve(self, history_item_ids: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        history = self.vocabulary.lookup_ragged(tf.RaggedTensor.from_tensor(history_item_ids))
        scores = self.all_item_scores(self.user_vectors(history))
        top = tf.math.top_k(scores, k=tf.clip_by_value(tf.cast(k, tf.int32), 0, self.num_items))
        return {"item_ids": self.vocabulary.item_ids(top.indices + 1), "scores": top.values}

    def score_candidates(
        self, history_item_ids: tf.Tensor, candidate_item_ids: tf.Tensor
    ) -> dict[str, tf.Tensor]:
        """M-FALCON: `MFalconScorer`'s two steps with a tf.map_fn over fixed-size micro-batches."""
        history = self.vocabulary.lookup_ragged(tf.RaggedTensor.from_tensor(history_item_ids[None]))
        history = pad_histories(history, self.max_len)  # (1, max_len)
        caches = self.encoder.encode_history(history)
        positions = tf.reduce_sum(tf.cast(tf.not_equal(history, 0), tf.int32), axis=1, keepdims=True)
        candidates = self.vocabulary.lookup(candidate_item_ids)
        candidates = tf.where(tf.equal(candidates, 0), self.vocabulary.oov_id, candidates)
        m, step = tf.size(candidates), self.micro_batch_size
        chunks = tf.reshape(tf.pad(candidates, [[0, (step - m % step) % step]]), [-1, step])

        def score_chunk(chunk: tf.Tensor) -> tf.Tensor:
            ids = chunk[None]  # (1, step); zero padding is scored and dropped
            states = self.encoder.encode_appended(ids, caches, positions)
            return tf.reduce_sum(states * self.encoder.item_vectors(ids), axis=-1)[0]

        scores = tf.map_fn(score_chunk, chunks, fn_output_signature=tf.TensorSpec([step], tf.float32))
        return {"scores": tf.reshape(scores, [-1])[:m]}


def export_hstu(
    model: SequentialRetrievalModel | SequentialEncoder,
    vocabulary: ItemVocabulary | Sequence[bytes | str],
    export_dir: str,
    micro_batch_size: int = DEFAULT_MICRO_BATCH_SIZE,
) -> None:
    """Writes the SavedModel with `serving_default`, `retrieve` and `score_candidates` (module
    docstring); the vocabulary file is its asset `assets/item_vocabulary.txt`.

    `vocabulary` is an `ItemVocabulary` or the list of ids (index i + 1 = vocabulary[i]).
    """
    encoder = model.encoder if isinstance(model, SequentialRetrievalModel) else model
    with tempfile.TemporaryDirectory() as scratch:
        vocabulary = _as_vocabulary(vocabulary, scratch)
        serving = HSTUServing(encoder, vocabulary, micro_batch_size)
        archive = keras.export.ExportArchive()
        archive.track(encoder)
        archive.track(vocabulary)
        archive.add_endpoint(
            name="serving_default",
            fn=serving.serve_examples,
            input_signature=[tf.TensorSpec([None], tf.string, name="examples")],
        )
        archive.add_endpoint(
            name="retrieve",
            fn=serving.retrieve,
            input_signature=[
                tf.TensorSpec([None, None], tf.string, name="history_item_ids"),
                tf.TensorSpec([], tf.int32, name="k"),
            ],
        )
        archive.add_endpoint(
            name="score_candidates",
            fn=serving.score_candidates,
            input_signature=[
                tf.TensorSpec([None], tf.string, name="history_item_ids"),
                tf.TensorSpec([None], tf.string, name="candidate_item_ids"),
            ],
        )
        archive.write_out(export_dir, verbose=False)


def run_fn(fn_args: Any) -> None:
    """TFX Trainer entry point (custom_config: see `trainer_config`)."""
    config = trainer_config(fn_args.custom_config)
    with tempfile.TemporaryDirectory() as scratch:
        model, vocabulary = train_hstu(
            fn_args.train_files,
            config,
            vocabulary_dir=scratch,
            train_steps=fn_args.train_steps,
            eval_files=fn_args.eval_files,
            eval_steps=fn_args.eval_steps,
        )
        export_hstu(model, vocabulary, fn_args.serving_model_dir, micro_batch_size=config.micro_batch_size)
    logging.info("HSTU trainer: SavedModel written to %s", fn_args.serving_model_dir)
