"""Tests of models/hstu/trainer.py: the TFX Trainer module of the HSTU retrieval model and its SavedModel.

One tiny model (d = 16, one block, max_len = 12) is trained once through `run_fn` on a GZIP TFRecord
data set laid out like SequenceGen's output, where item m<j> is always followed by m<j+1>; the
export is then loaded with `tf.saved_model.load` and its three signatures are checked against the
Keras model (`evaluate_full_ranking`, `naive_scores`).
"""

from __future__ import annotations

import collections
import math
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from tfx.components.trainer.fn_args_utils import FnArgs

from watchnext.components import tf_example
from watchnext.models import features as F
from watchnext.models.hstu import trainer
from watchnext.models.hstu.encoder import HSTU_CONFIG
from watchnext.models.hstu.mfalcon import naive_scores
from watchnext.models.hstu.retrieval import evaluate_full_ranking

NUM_ITEMS = 30
NUM_USERS = 160
MAX_LEN = 12
MICRO_BATCH = 8
T0 = 1_700_000_000
CUSTOM_CONFIG = {
    "hstu": {"embedding_dim": 16, "dqk": 16, "dv": 16, "num_blocks": 1, "max_len": MAX_LEN, "dropout": 0.0},
    "retrieval": {
        "num_negatives": 8,
        "learning_rate": 1e-2,
        "batch_size": 32,
        "epochs": 8,
        "jit_compile": False,
    },
    "seed": 0,
    "micro_batch_size": MICRO_BATCH,
}


def item(j: int) -> bytes:
    return b"m%d" % j


def user_sequences(num_users: int = NUM_USERS, seed: int = 0) -> list[list[bytes]]:
    """m<j> is always followed by m<j+1> (wrapping); lengths 5..16, so some exceed max_len."""
    rng = np.random.default_rng(seed)
    return [
        [item((start + i) % NUM_ITEMS) for i in range(int(rng.integers(5, 17)))]
        for start in rng.integers(0, NUM_ITEMS, size=num_users)
    ]


def sequence_example(user: int, history: list[bytes], target: bytes) -> bytes:
    return tf_example.serialize(
        {
            F.USER_ID: [b"u%d" % user],
            F.HISTORY_ITEM_IDS: history,
            F.HISTORY_TIMESTAMPS: [T0 + 60 * i for i in range(len(history))],
            F.HISTORY_ACTIONS: [1] * len(history),
            F.HISTORY_LENGTH: [len(history)],
            F.TARGET_ITEM_ID: [target],
            F.TARGET_TIMESTAMP: [T0 + 60 * len(history)],
        }
    )


def write_split(root: str, split: str, records: list[bytes]) -> str:
    directory = os.path.join(root, f"Split-{split}")
    os.makedirs(directory)
    path = os.path.join(directory, "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)
    return os.path.join(directory, "*")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """run_fn on the successor data; also captures the Keras model handed to export_hstu."""
    root = str(tmp_path_factory.mktemp("hstu_trainer"))
    sequences = user_sequences()
    train = [sequence_example(u, s[:-2][-200:], s[-2]) for u, s in enumerate(sequences)]
    test = [sequence_example(u, s[:-1][-200:], s[-1]) for u, s in enumerate(sequences)]
    train_pattern, test_pattern = write_split(root, "train", train), write_split(root, "test", test)
    export_dir = os.path.join(root, "serving_model")
    captured = {}
    real_export = trainer.export_hstu

    def capture(model, vocabulary, export_dir, **kwargs):
        captured["model"] = model
        return real_export(model, vocabulary, export_dir, **kwargs)

    fn_args = FnArgs(
        train_files=[train_pattern],
        eval_files=[test_pattern],
        train_steps=1000,
        eval_steps=0,
        serving_model_dir=export_dir,
        custom_config=CUSTOM_CONFIG,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "export_hstu", capture)
        trainer.run_fn(fn_args)
    with open(os.path.join(export_dir, "assets", trainer.VOCABULARY_FILE), "rb") as f:
        vocabulary = f.read().split(b"\n")[:-1]
    return {
        "sequences": sequences,
        "test": test,
        "model": captured["model"],
        "vocabulary": vocabulary,
        "index": {v: i + 1 for i, v in enumerate(vocabulary)},
        "served": tf.saved_model.load(export_dir),
        "export_dir": export_dir,
    }


def np_(t) -> np.ndarray:
    return np.asarray(t.numpy() if hasattr(t, "numpy") else t)


# -- config, data, schedule (no training) ------------------------------------------------------------


def test_trainer_config_defaults_and_validation():
    config = trainer.trainer_config(None)
    assert config.encoder == HSTU_CONFIG
    assert config.retrieval.epochs == trainer.DEFAULT_EPOCHS and config.retrieval.seed == 0
    assert config.micro_batch_size == trainer.DEFAULT_MICRO_BATCH_SIZE
    config = trainer.trainer_config({"hstu": {"block_type": "sasrec"}, "retrieval": {"epochs": 3}, "seed": 5})
    assert config.encoder.block_type == "sasrec" and config.encoder.num_blocks == HSTU_CONFIG.num_blocks
    assert config.retrieval.epochs == 3 and config.retrieval.seed == 5 and config.seed == 5
    assert trainer.trainer_config({"seed": 5, "retrieval": {"seed": 2}}).retrieval.seed == 2
    assert trainer.trainer_config({"ranker": {}}) == trainer.trainer_config({})  # other keys: ignored
    with pytest.raises(ValueError, match="use_time_bias"):
        trainer.trainer_config({"hstu": {"use_time_bias": True}})
    with pytest.raises(TypeError):
        trainer.trainer_config({"hstu": {"no_such_field": 1}})


def test_training_schedule():
    assert trainer.training_schedule(160, 32, 8, None) == (8, 5)
    assert trainer.training_schedule(160, 32, 8, 1000) == (8, 5)
    assert trainer.training_schedule(160, 32, 8, 12) == (2, 5)  # at most train_steps steps
    assert trainer.training_schedule(160, 32, 8, 3) == (1, 3)
    assert trainer.training_schedule(10, 32, 2, 0) == (2, 1)


def test_vocabulary_order_and_windows(tmp_path):
    records = [
        sequence_example(0, [b"b", b"a", b"c", b""], b"a"),
        sequence_example(1, [b"c"], b"b"),
        sequence_example(2, [item(j) for j in range(20)], b"a"),
    ]
    pattern = write_split(str(tmp_path), "train", records)
    counts, num_examples = trainer.count_items([pattern])
    assert num_examples == 3 and counts[b"a"] == 3 and counts[b"c"] == 2
    vocabulary = trainer.vocabulary_from_counts(counts)
    assert vocabulary[:3] == [b"a", b"b", b"c"]  # by count (3, 2, 2), then id
    assert vocabulary[3:] == sorted(item(j) for j in range(20)) and b"" not in vocabulary
    vocab = trainer.ItemVocabulary.from_list(vocabulary, str(tmp_path / "vocab"))
    ids = np_(vocab.lookup(tf.constant([[b"a", b"c"], [b"", b"zz"]])))
    np.testing.assert_array_equal(ids, [[1, 3], [0, vocab.num_items + 1]])
    assert np_(vocab.item_ids(tf.constant([1, 3, 0, vocab.num_items + 1]))).tolist() == [b"a", b"c", b"", b""]

    batches = trainer.make_dataset([pattern], vocab, max_len=4, batch_size=3, shuffle=False, repeat=False)
    inputs, targets = (np_(t) for t in next(iter(batches)))
    a, b, c = 1, 2, 3
    last = [vocabulary.index(item(j)) + 1 for j in (16, 17, 18, 19)]
    np.testing.assert_array_equal(inputs, [[b, a, c, 0], [c, 0, 0, 0], last])  # "" dropped, recent 4 + 1
    np.testing.assert_array_equal(targets, [[a, c, a, 0], [b, 0, 0, 0], [*last[1:], a]])


def test_stochastic_length_window_keeps_ordered_subsequences():
    window = tf.range(1, 11)  # n = 9 > L = floor(40^0.5) = 6; cut with probability 1 - 40 / 81
    lengths = collections.Counter()
    for seed in range(40):
        out = np_(trainer.stochastic_length_window(window, tf.constant(seed, tf.int64), 40, alpha=1.0))
        assert np.all(np.diff(out) > 0) and set(out) <= set(range(1, 11))
        lengths[len(out)] += 1
    assert set(lengths) == {10, int(math.floor(40**0.5)) + 1} and 10 <= lengths[10] <= 30
    short = np_(trainer.stochastic_length_window(tf.range(1, 7), tf.constant(0, tf.int64), 40, 1.0))
    np.testing.assert_array_equal(short, np.arange(1, 7))  # n = 5 <= L: kept


# -- the exported SavedModel -------------------------------------------------------------------------


def test_vocabulary_asset(trained):
    counts = collections.Counter(i for s in trained["sequences"] for i in s[:-1])
    expected = [i for i, _ in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))]
    assert trained["vocabulary"] == expected
    assert trained["model"].num_items == len(expected) + 1  # + the OOV item
    assert set(trained["served"].signatures) == {"serving_default", "retrieve", "score_candidates"}


def test_serving_default_ranks_learned_targets_like_evaluate_full_ranking(trained):
    out = trained["served"].signatures["serving_default"](examples=tf.constant(trained["test"]))
    out = {k: np_(v) for k, v in out.items()}
    assert set(out) == {"target_rank"} | {f"{m}_at_{k}" for m in ("hit", "ndcg") for k in (10, 50, 200)}
    assert all(v.dtype == np.float32 and v.shape == (NUM_USERS,) for v in out.values())
    rank = out["target_rank"]
    assert np.mean(rank == 0) >= 0.8 and np.mean(out["hit_at_10"]) >= 0.95
    for k in (10, 50, 200):
        np.testing.assert_array_equal(out[f"hit_at_{k}"], (rank < k).astype(np.float32))
        ndcg = np.where(rank < k, 1 / np.log2(rank + 2), 0)
        np.testing.assert_allclose(out[f"ndcg_at_{k}"], ndcg, rtol=1e-6)

    # evaluate_full_ranking on the Keras model ranks over items 1..N+1 (its last item is the OOV one,
    # which the export leaves out): same ranks once an OOV item scoring >= the target is discounted.
    model, index = trained["model"], trained["index"]
    histories = np.zeros((NUM_USERS, MAX_LEN), dtype=np.int32)
    for u, s in enumerate(trained["sequences"]):
        ids = [index[i] for i in s[:-1]][-MAX_LEN:]
        histories[u, : len(ids)] = ids
    targets = np.array([index[s[-1]] for s in trained["sequences"]])
    reference = evaluate_full_ranking(model, histories, targets, return_ranks=True, jit_compile=False)
    users = np_(model.encoder.user_vectors(histories))
    items = np_(model.encoder.item_vectors(np.arange(1, model.num_items + 1)))
    scores = users @ items.T
    oov_ahead = scores[:, -1] >= scores[np.arange(NUM_USERS), targets - 1]
    np.testing.assert_array_equal(rank, reference["ranks"] - oov_ahead)
    if not oov_ahead.any():
        for k in (10, 50, 200):
            assert np.mean(out[f"hit_at_{k}"]) == pytest.approx(reference[f"HR@{k}"])
            assert np.mean(out[f"ndcg_at_{k}"]) == pytest.approx(reference[f"NDCG@{k}"], rel=1e-6)


def test_serving_default_unknown_items(trained):
    served, n = trained["served"], len(trained["vocabulary"])
    examples = [
        sequence_example(0, [item(3), item(4)], b"never-seen"),  # OOV target
        sequence_example(1, [b"nope", b"", item(4)], item(5)),  # OOV and "" in the history
        sequence_example(2, [b"nope"], item(5)),  # only unknown history
    ]
    out = {k: np_(v) for k, v in served.signatures["serving_default"](examples=tf.constant(examples)).items()}
    assert out["target_rank"][0] == n
    assert all(out[key][0] == 0 for key in out if key != "target_rank")
    assert np.all(np.isfinite(out["target_rank"])) and 0 <= out["target_rank"][2] < n
    assert out["hit_at_10"][1] == 1.0  # the unknown item does not hide the pattern


def test_retrieve_top_k(trained):
    served, index, n = trained["served"], trained["index"], len(trained["vocabulary"])
    histories = tf.constant([[item(3), item(4), item(5)], [item(10), b"", b""], [b"nope", item(20), b""]])
    all_scores = None
    for k in (5, 12):
        out = served.signatures["retrieve"](history_item_ids=histories, k=tf.constant(k, tf.int32))
        ids, scores = np_(out["item_ids"]), np_(out["scores"])
        assert ids.shape == scores.shape == (3, k) and scores.dtype == np.float32
        assert all(i in index for i in ids.ravel())
        assert np.all(np.diff(scores, axis=1) <= 0)
        assert [row[0] for row in ids] == [item(6), item(11), item(21)]
        if all_scores is not None:
            np.testing.assert_allclose(scores[:, : all_scores.shape[1]], all_scores, rtol=1e-6)
        all_scores = scores
    everything = served.signatures["retrieve"](history_item_ids=histories, k=tf.constant(10 * n, tf.int32))
    assert np_(everything["item_ids"]).shape == (3, n) and len(set(np_(everything["item_ids"])[0])) == n
    empty = served.signatures["retrieve"](history_item_ids=tf.constant([[b""]]), k=tf.constant(3))
    assert np_(empty["item_ids"]).shape == (1, 3)


@pytest.mark.parametrize("history_length", [1, 4, MAX_LEN + 3])
def test_score_candidates_equals_naive_scoring(trained, history_length):
    served, model, index = trained["served"], trained["model"], trained["index"]
    history = [item(j) for j in range(7, 7 + history_length)]
    candidates = [*trained["vocabulary"][:19], b"unknown", b""]  # 21: 3 micro-batches, the last padded
    out = served.signatures["score_candidates"](
        history_item_ids=tf.constant(history), candidate_item_ids=tf.constant(candidates)
    )
    scores = np_(out["scores"])
    assert scores.shape == (len(candidates),) and scores.dtype == np.float32
    oov = model.num_items
    history_ids = np.array([[index[i] for i in history][-MAX_LEN:]], dtype=np.int32)
    candidate_ids = np.array([[index.get(c, oov) for c in candidates]], dtype=np.int32)
    reference = naive_scores(model.encoder, history_ids, candidate_ids)[0]
    np.testing.assert_allclose(scores, reference, atol=1e-5)

    none = served.signatures["score_candidates"](
        history_item_ids=tf.constant(history), candidate_item_ids=tf.constant([], tf.string)
    )
    assert np_(none["scores"]).shape == (0,)


def test_score_candidates_unknown_history(trained):
    out = trained["served"].signatures["score_candidates"](
        history_item_ids=tf.constant([b"nope", b""]), candidate_item_ids=tf.constant([item(1), b"", b"x"])
    )
    scores = np_(out["scores"])
    assert scores.shape == (3,) and np.all(np.isfinite(scores)) and scores[1] == scores[2]


def test_run_fn_xla_sasrec_stochastic_length_validation_and_step_bound(tmp_path):
    """The other paths of run_fn: XLA, SASRec blocks, Stochastic Length, validation, train_steps bound."""
    sequences = user_sequences(40, seed=1)
    train = [sequence_example(u, s[:-2], s[-2]) for u, s in enumerate(sequences)]
    test = [sequence_example(u, s[:-1], s[-1]) for u, s in enumerate(sequences)]
    root = str(tmp_path)
    export_dir = os.path.join(root, "serving_model")
    config = {
        "hstu": {**CUSTOM_CONFIG["hstu"], "block_type": "sasrec", "ffn_dim": 16},
        "retrieval": {
            "num_negatives": 4,
            "batch_size": 16,
            "epochs": 2,
            "stochastic_length": True,
            "stochastic_length_alpha": 1.5,
            "negatives": "random+in_batch",
        },
        "seed": 3,
    }
    fn_args = FnArgs(
        train_files=[write_split(root, "train", train)],
        eval_files=[write_split(root, "test", test)],
        train_steps=2,  # < one epoch of ceil(40 / 16) = 3 steps
        eval_steps=1,
        serving_model_dir=export_dir,
        custom_config=config,
    )
    captured = {}
    real_export = trainer.export_hstu

    def capture(model, vocabulary, export_dir, **kwargs):
        captured["model"] = model
        return real_export(model, vocabulary, export_dir, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "export_hstu", capture)
        trainer.run_fn(fn_args)
    model = captured["model"]
    assert model.encoder_config.block_type == "sasrec" and model.retrieval_config.jit_compile
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2
    served = tf.saved_model.load(export_dir)
    out = served.signatures["serving_default"](examples=tf.constant(test[:5]))
    assert np_(out["target_rank"]).shape == (5,)
    top = served.signatures["retrieve"](history_item_ids=tf.constant([[item(1), item(2)]]), k=tf.constant(4))
    assert np_(top["item_ids"]).shape == (1, 4)
    scores = served.signatures["score_candidates"](
        history_item_ids=tf.constant([item(1), item(2)]), candidate_item_ids=tf.constant([item(3), item(9)])
    )
    assert np_(scores["scores"]).shape == (2,)
