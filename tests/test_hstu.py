"""Tests of the HSTU core: layers/hstu.py, layers/sasrec.py, models/hstu (encoder, M-FALCON), benchmark.

Small shapes only (d <= 16, n <= 70) so the file runs in well under a minute on two cores.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from watchnext.models.hstu import (
    HSTU_CONFIG,
    HSTU_LARGE_CONFIG,
    SASREC_CONFIG,
    EncoderConfig,
    MFalconScorer,
    SequentialEncoder,
    mfalcon_scores,
    naive_scores,
)
from watchnext.models.hstu.mfalcon import backend_jit
from watchnext.models.layers.hstu import (
    HSTULayer,
    RelativeAttentionBias,
    block_layout,
    lengths_to_mask,
    silu_attention,
    time_gap_buckets,
)
from watchnext.models.layers.sasrec import SASRecBlock

REPO = Path(__file__).resolve().parents[1]
D = 16


def np_(t) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(t))


def randomize(layer: keras.layers.Layer, seed: int = 0, scale: float = 0.5) -> None:
    """Give the relative-bias tables visible values (their initializer is tiny)."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        if "table" in weight.path:
            weight.assign(rng.normal(scale=scale, size=weight.shape).astype("float32"))


def make_hstu(n: int = 70, heads: int = 2, block_size: int = 16, use_time: bool = False, **kw) -> HSTULayer:
    layer = HSTULayer(
        num_heads=heads,
        dqk=8,
        dv=8,
        max_len=80,
        block_size=block_size,
        use_time_bias=use_time,
        **kw,
    )
    layer.build((None, n, D))
    randomize(layer)
    return layer


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    x = rng.normal(size=(3, 70, D)).astype("float32")
    lengths = np.array([70, 33, 5], dtype="int32")
    timestamps = np.cumsum(rng.integers(0, 5000, size=(3, 70)), axis=1).astype("int64")
    return {"x": x, "lengths": lengths, "timestamps": timestamps}


# -- shapes, causality, padding -------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["blocked", "dense"])
def test_hstu_shapes(data, impl):
    layer = make_hstu(attention_impl=impl)
    assert tuple(layer(data["x"]).shape) == (3, 70, D)
    assert tuple(layer(data["x"][:, :9]).shape) == (3, 9, D)
    assert layer.compute_output_shape((None, 70, D)) == (None, 70, D)


def test_sasrec_shapes(data):
    block = SASRecBlock(num_heads=2, ffn_dim=12)
    assert tuple(block(data["x"], lengths=data["lengths"]).shape) == (3, 70, D)


@pytest.mark.parametrize("kind", ["blocked", "dense", "sasrec"])
def test_causality(data, kind):
    layer = SASRecBlock(num_heads=2) if kind == "sasrec" else make_hstu(attention_impl=kind)
    x = data["x"]
    changed = x.copy()
    changed[:, 40:] = np.random.default_rng(1).normal(size=changed[:, 40:].shape)
    y, y2 = np_(layer(x)), np_(layer(changed))
    np.testing.assert_allclose(y[:, :40], y2[:, :40], atol=1e-5)
    assert np.abs(y[:, 40:] - y2[:, 40:]).max() > 1e-3


@pytest.mark.parametrize("kind", ["blocked", "dense", "sasrec"])
def test_padding_mask_respected(data, kind):
    layer = SASRecBlock(num_heads=2) if kind == "sasrec" else make_hstu(attention_impl=kind)
    x, lengths = data["x"], data["lengths"]
    mask = np_(lengths_to_mask(lengths, 70))
    garbage = np.where(mask[..., None], x, 100.0 * np.random.default_rng(2).normal(size=x.shape)).astype(
        "float32"
    )
    y = np_(layer(x, lengths=lengths))
    np.testing.assert_allclose(y[mask], np_(layer(garbage, lengths=lengths))[mask], atol=1e-5)
    np.testing.assert_allclose(y, np_(layer(x, padding_mask=mask)), atol=1e-6)
    if kind == "sasrec":
        assert np.all(y[~mask] == 0.0)
    else:  # padded positions pass their input through
        np.testing.assert_allclose(y[~mask], x[~mask], atol=1e-6)
    # Unmasked, row 1 at position 0 would see nothing else anyway; position 20 must differ.
    assert np.abs(np_(layer(garbage))[1, 20] - y[1, 20]).max() < 1e-5  # causal: later garbage unseen
    assert np.abs(np_(layer(garbage))[1, 50] - np_(layer(garbage, lengths=lengths))[1, 50]).max() > 1e-3


# -- blocked == dense ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "heads,block_size,use_time,with_mask,custom_min_keys,per_sequence_max_blocks",
    [
        (1, 16, False, False, 0, 64),
        (2, 16, True, True, 0, 64),
        (2, 24, False, True, 40, 64),  # blocks with fewer than 40 keys use autodiff, the others not
        (1, 128, True, False, 10**6, 64),
        (2, 16, True, True, 10**6, 64),
        (2, 16, True, True, 0, 0),  # padding blocks skipped for the batch, not per sequence
    ],
)
def test_blocked_equals_dense_forward_and_gradient(
    data, monkeypatch, heads, block_size, use_time, with_mask, custom_min_keys, per_sequence_max_blocks
):
    import tensorflow as tf

    from watchnext.models.layers import hstu

    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient check written with tf.GradientTape")
    monkeypatch.setattr(hstu, "CUSTOM_BACKWARD_MIN_KEYS", custom_min_keys)
    monkeypatch.setattr(hstu, "PER_SEQUENCE_SKIP_MAX_BLOCKS", per_sequence_max_blocks)
    layer = make_hstu(heads=heads, block_size=block_size, use_time=use_time)
    x = tf.constant(data["x"])
    kwargs = {"timestamps": data["timestamps"] if use_time else None}
    if with_mask:
        kwargs["lengths"] = data["lengths"]
    results = {}
    for impl in ("blocked", "dense"):
        layer.attention_impl = impl
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, **kwargs)
            loss = tf.reduce_sum(y * tf.sin(y))
        results[impl] = [y, *tape.gradient(loss, [x, *layer.trainable_variables])]
    for blocked, dense in zip(results["blocked"], results["dense"], strict=True):
        scale = max(1.0, float(np.abs(np_(dense)).max()))
        np.testing.assert_allclose(np_(blocked), np_(dense), atol=1e-5 * scale)


def test_silu_attention_gradient_matches_autodiff():
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient check written with tf.GradientTape")
    rng = np.random.default_rng(3)
    q, k_t, v = (
        tf.constant(rng.normal(size=s).astype("float32"))
        for s in [(2, 3, 8, 5), (2, 3, 5, 12), (2, 3, 12, 4)]
    )
    bias = tf.constant(rng.normal(size=(8, 12)).astype("float32"))
    cot = tf.constant(rng.normal(size=(2, 3, 8, 4)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([q, k_t, v, bias])
        custom = tf.reduce_sum(silu_attention(q, k_t, v, bias) * cot)
        plain = tf.reduce_sum(tf.matmul(tf.nn.silu(tf.matmul(q, k_t) + bias), v) * cot)
    for a, b in zip(
        tape.gradient(custom, [q, k_t, v, bias]), tape.gradient(plain, [q, k_t, v, bias]), strict=True
    ):
        np.testing.assert_allclose(np_(a), np_(b), atol=1e-4)


def test_block_layout():
    assert block_layout(200, 256) == (2, 104)
    assert block_layout(128, 256) == (1, 128)
    assert block_layout(1024, 256) == (4, 256)
    assert block_layout(70, 16) == (5, 16)
    assert block_layout(201, 100) == (3, 72)


@pytest.mark.parametrize("per_sequence_max_blocks", [0, 64])  # skip per batch / per sequence
def test_empty_block_skipping_matches_dense(data, monkeypatch, per_sequence_max_blocks):
    from watchnext.models.layers import hstu

    monkeypatch.setattr(hstu, "PER_SEQUENCE_SKIP_MAX_BLOCKS", per_sequence_max_blocks)
    layer = make_hstu(block_size=8)
    short = np.array([3, 9, 1], dtype="int32")  # all rows end in the first two blocks
    blocked = np_(layer(data["x"], lengths=short))
    layer.attention_impl = "dense"
    np.testing.assert_allclose(blocked, np_(layer(data["x"], lengths=short)), atol=1e-5)


# -- relative attention bias ---------------------------------------------------------------------


def test_time_gap_buckets():
    gaps = np.array([0, 1, 2, 3, -3, 3600, 86_400, 10**9, 10**15], dtype="int64")
    expected = np.clip(np.floor(np.log(np.maximum(np.abs(gaps), 1)) / 0.301), 0, 127).astype("int32")
    got = np_(time_gap_buckets(gaps))
    np.testing.assert_array_equal(got, expected)
    assert got[0] == got[1] == 0 and got[3] == got[4] == 3 and got[-1] == 114
    assert np_(time_gap_buckets(np.array([10**300], dtype="float64"), num_buckets=128))[0] == 127


def test_rab_shapes_and_values():
    rab = RelativeAttentionBias(max_len=10, num_time_buckets=16, use_time=True)
    rab.build()
    randomize(rab)
    pos = np.arange(6)[None, :]
    ts = np.array([[0, 1, 5, 100, 5000, 90000]], dtype="int64")
    bias = np_(rab(pos, pos, ts, ts))
    assert bias.shape == (1, 6, 6)
    position_table, time_table = np_(rab.position_table), np_(rab.time_table)
    assert position_table.shape == (19,) and time_table.shape == (16,)
    i, j = 4, 1
    bucket = min(int(np.floor(np.log(5000 - 1) / 0.301)), 15)
    assert bias[0, i, j] == pytest.approx(position_table[i - j + 9] + time_table[bucket], abs=1e-6)
    assert np_(rab(np.arange(3)[None], np.arange(4)[None])).shape == (1, 3, 4)  # time part off
    # Relative positions beyond max_len - 1 are clipped.
    far = np_(rab(np.array([[30]]), np.array([[0]])))
    assert far[0, 0, 0] == pytest.approx(position_table[-1])


def test_causal_rows_match_position_bias():
    rab = RelativeAttentionBias(max_len=12)
    rab.build()
    randomize(rab)
    rows = np_(rab.causal_rows(4, 16))
    table = np_(rab.position_table)
    for a in range(4):
        for m in range(16):
            rel = 16 - 4 + a - m
            expected = table[min(rel, 11) + 11] if rel >= 0 else -1e9
            assert rows[a, m] == pytest.approx(expected)


# -- XLA, config, saving ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["blocked", "dense", "sasrec"])
def test_jit_compile_matches_eager(data, kind):
    layer = SASRecBlock(num_heads=2) if kind == "sasrec" else make_hstu(attention_impl=kind, use_time=True)
    kwargs = {"lengths": data["lengths"], "timestamps": data["timestamps"]}
    eager = np_(layer(data["x"], **kwargs))
    compiled = backend_jit(lambda x, lengths, timestamps: layer(x, lengths=lengths, timestamps=timestamps))
    np.testing.assert_allclose(
        np_(compiled(data["x"], data["lengths"], data["timestamps"])), eager, atol=1e-5
    )


def test_dropout_only_in_training(data):
    layer = make_hstu(dropout=0.5, seed=1)
    inference = np_(layer(data["x"]))
    np.testing.assert_allclose(inference, np_(layer(data["x"], training=False)), atol=0)
    assert np.abs(np_(layer(data["x"], training=True)) - inference).max() > 1e-3


def test_uvqk_starts_small_and_each_layer_differs():
    keras.utils.set_random_seed(0)
    layers = [HSTULayer(num_heads=1, dqk=50, dv=50, max_len=20, seed=7) for _ in range(2)]
    for layer in layers:
        layer.build((None, None, 50))
    kernels = [np_(layer.f1.kernel) for layer in layers]
    for kernel in kernels:
        assert kernel.shape == (50, 200)
        assert np.std(kernel) == pytest.approx(0.02, rel=0.05)  # the reference's N(0, 0.02)
    assert not np.allclose(kernels[0], kernels[1])  # one dropout seed, not one kernel
    wider = HSTULayer(num_heads=1, dqk=50, dv=50, max_len=20, uvqk_init_stddev=0.1)
    wider.build((None, None, 50))
    assert np.std(np_(wider.f1.kernel)) == pytest.approx(0.1, rel=0.05)


@pytest.mark.parametrize(
    "layer",
    [
        HSTULayer(
            num_heads=2,
            dqk=4,
            dv=6,
            max_len=33,
            dropout=0.1,
            use_time_bias=True,
            block_size=64,
            seed=3,
            uvqk_init_stddev=0.05,
        ),
        SASRecBlock(num_heads=2, head_dim=4, ffn_dim=7, dropout=0.3, attention_dropout=0.0),
        RelativeAttentionBias(max_len=7, num_time_buckets=9, use_time=True),
    ],
)
def test_get_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"].startswith("watchnext>")
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config


def test_functional_model_save_load(tmp_path, data):
    x_in = keras.Input((70, D))
    len_in = keras.Input((), dtype="int32")
    h = HSTULayer(num_heads=2, dqk=8, dv=8, max_len=80, block_size=16)(x_in, lengths=len_in)
    y = SASRecBlock(num_heads=2)(h, lengths=len_in)
    model = keras.Model([x_in, len_in], y)
    randomize(model)
    path = tmp_path / "hstu.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    inputs = [data["x"], data["lengths"]]
    np.testing.assert_allclose(np_(loaded(inputs)), np_(model(inputs)), atol=1e-6)


def test_fit_with_unknown_batch_size(data):
    """Keras fit traces the blocked path with a dynamic batch dimension (and a partial last batch)."""
    x_in = keras.Input((20, D))
    y = HSTULayer(num_heads=2, dqk=8, dv=8, max_len=24, block_size=8, dropout=0.1)(x_in)
    model = keras.Model(x_in, SASRecBlock(num_heads=2, dropout=0.1)(y))
    model.compile(optimizer="adam", loss="mse")
    x = data["x"][:, :20]
    history = model.fit(x, x, batch_size=2, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


# -- encoder and M-FALCON -------------------------------------------------------------------------

TINY = {"embedding_dim": D, "max_len": 24, "dropout": 0.1, "block_size": 8}


def tiny_encoder(base: EncoderConfig, seed: int = 0, **overrides) -> SequentialEncoder:
    config = EncoderConfig(**{**base.__dict__, **TINY, **overrides})
    if config.block_type == "hstu":
        per_head = 8 // config.num_heads
        config = EncoderConfig(**{**config.__dict__, "dqk": per_head, "dv": per_head})
    keras.utils.set_random_seed(seed)
    encoder = SequentialEncoder(num_items=40, config=config)
    encoder.build()
    randomize(encoder, seed)
    return encoder


def test_public_configs():
    assert (
        SASREC_CONFIG.block_type,
        SASREC_CONFIG.num_blocks,
        SASREC_CONFIG.num_heads,
        SASREC_CONFIG.ffn_dim,
    ) == (
        "sasrec",
        2,
        1,
        50,
    )
    assert (HSTU_CONFIG.num_blocks, HSTU_CONFIG.num_heads, HSTU_CONFIG.dqk, HSTU_CONFIG.dv) == (2, 1, 50, 50)
    assert (HSTU_LARGE_CONFIG.num_blocks, HSTU_LARGE_CONFIG.num_heads, HSTU_LARGE_CONFIG.dqk) == (8, 2, 25)
    for config in (SASREC_CONFIG, HSTU_CONFIG, HSTU_LARGE_CONFIG):
        assert (config.embedding_dim, config.dropout, config.max_len) == (50, 0.2, 200)
    encoder = SequentialEncoder(num_items=100, config=HSTU_LARGE_CONFIG)
    encoder.build()
    assert len(encoder.blocks) == 8 and encoder.blocks[0].num_heads == 2


@pytest.mark.parametrize("base", [HSTU_CONFIG, SASREC_CONFIG])
def test_encoder_outputs(base):
    encoder = tiny_encoder(base)
    ids = np.array([[5, 9, 2, 0, 0, 0], [1, 2, 3, 4, 5, 6]], dtype="int32")
    states = np_(encoder(ids))
    assert states.shape == (2, 6, D)
    norms = np.linalg.norm(states, axis=-1)
    np.testing.assert_allclose(norms[ids != 0], 1.0, atol=1e-5)
    assert np.all(norms[ids == 0] == 0.0)
    np.testing.assert_allclose(np_(encoder.user_vectors(ids)), states[[0, 1], [2, 5]], atol=1e-6)
    np.testing.assert_allclose(
        np.linalg.norm(np_(encoder.item_vectors(np.arange(1, 41))), axis=-1), 1.0, atol=1e-5
    )


def test_encoder_save_load(tmp_path):
    encoder = tiny_encoder(HSTU_CONFIG, use_time_bias=True)
    ids = np.array([[5, 9, 2, 7, 0, 0]], dtype="int32")
    ts = np.array([[0, 10, 4000, 4100, 0, 0]], dtype="int64")
    path = tmp_path / "encoder.keras"
    encoder.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.encoder_config == encoder.encoder_config
    np.testing.assert_allclose(np_(loaded(ids, timestamps=ts)), np_(encoder(ids, timestamps=ts)), atol=1e-6)


HISTORIES = np.array(
    [[3, 17, 22, 8, 8, 31, 5, 0, 0, 0], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [39, 0, 0, 0, 0, 0, 0, 0, 0, 0]],
    dtype="int32",
)


@pytest.mark.parametrize(
    "base,overrides",
    [
        (HSTU_CONFIG, {}),
        (HSTU_CONFIG, {"use_time_bias": True}),
        (HSTU_LARGE_CONFIG, {"num_blocks": 3}),
        (SASREC_CONFIG, {}),
    ],
)
@pytest.mark.parametrize("m,micro_batch", [(1, 4), (7, 3), (12, 4), (13, 16)])
def test_mfalcon_equals_naive(base, overrides, m, micro_batch):
    encoder = tiny_encoder(base, **overrides)
    candidates = np.random.default_rng(m).integers(1, 41, size=(3, m)).astype("int32")
    kwargs = {}
    if overrides.get("use_time_bias"):
        history_ts = np.cumsum(np.random.default_rng(5).integers(1, 9000, size=HISTORIES.shape), axis=1)
        kwargs = {"history_timestamps": history_ts, "candidate_timestamps": history_ts[:, -1] + 777}
    fast = np_(mfalcon_scores(encoder, HISTORIES, candidates, micro_batch_size=micro_batch, **kwargs))
    slow = naive_scores(encoder, HISTORIES, candidates, batch_size=5, **kwargs)
    assert fast.shape == slow.shape == (3, m)
    np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_mfalcon_jit_and_naive_one_call_per_candidate():
    encoder = tiny_encoder(HSTU_CONFIG)
    candidates = np.arange(1, 12, dtype="int32")[None, :]
    history = HISTORIES[:1]
    reference = naive_scores(encoder, history, candidates, batch_size=1)
    fast = np_(MFalconScorer(encoder, micro_batch_size=4, jit_compile=True)(history, candidates))
    np.testing.assert_allclose(fast, reference, atol=1e-5)
    # A candidate's score must not depend on which other candidates share its micro-batch.
    alone = np_(mfalcon_scores(encoder, history, candidates[:, 5:6], micro_batch_size=1))
    np.testing.assert_allclose(alone[0, 0], fast[0, 5], atol=1e-5)


def test_mfalcon_scores_every_micro_batch_in_one_call():
    encoder = tiny_encoder(HSTU_CONFIG)
    scorer = MFalconScorer(encoder, micro_batch_size=4)
    calls = []
    score_all = scorer._score_all
    scorer._score_all = lambda candidates, *rest: (
        calls.append(candidates.shape) or score_all(candidates, *rest)
    )
    scores = scorer(HISTORIES[:1], np.arange(1, 12, dtype="int32")[None, :])
    assert calls == [(1, 12)] and np_(scores).shape == (1, 11)  # 11 candidates -> 3 micro-batches of 4


# -- benchmark smoke run ---------------------------------------------------------------------------


def import_hstu_speed():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import hstu_speed
    finally:
        sys.path.pop(0)
    return hstu_speed


def test_benchmark_products_only_floor_does_the_products_of_the_plain_attention():
    """The floor's hand-written backward must be the exact gradient of (Q K^T) V, not less work."""
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        pytest.skip("gradient check written with tf.GradientTape")
    products_only = import_hstu_speed().products_only_attention
    rng = np.random.default_rng(4)
    q, k_t, v = (
        tf.constant(rng.normal(size=s).astype("float32"))
        for s in [(2, 1, 8, 5), (2, 1, 5, 12), (2, 1, 12, 4)]
    )
    bias = tf.zeros((8, 12))
    cot = tf.constant(rng.normal(size=(2, 1, 8, 4)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([q, k_t, v])
        floor = tf.reduce_sum(products_only(q, k_t, v, bias) * cot)
        plain = tf.reduce_sum(tf.matmul(tf.matmul(q, k_t), v) * cot)
    np.testing.assert_allclose(np_(floor), np_(plain), rtol=1e-5)
    for a, b in zip(tape.gradient(floor, [q, k_t, v]), tape.gradient(plain, [q, k_t, v]), strict=True):
        np.testing.assert_allclose(np_(a), np_(b), atol=1e-4)


def test_benchmark_quick_run(capsys):
    report = import_hstu_speed().main(
        [
            "--sizes",
            "24",
            "--batch",
            "1",
            "--width",
            "8",
            "--repeats",
            "1",
            "--warmup",
            "1",
            "--m",
            "6",
            "--history",
            "10",
            "--num-items",
            "30",
            "--micro-batch",
            "4",
            "--naive-batch",
            "3",
            "--scoring-repeats",
            "1",
        ]
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["blocks"] == report["blocks"] and len(report["blocks"]) == 4
    assert {entry["mode"] for entry in report["blocks"]} == {"off", "xla"}
    fractions = {entry["min_length_fraction"]: entry["valid_token_fraction"] for entry in report["blocks"]}
    assert fractions[1.0] == 1.0 and 0.5 <= fractions[0.5] <= 1.0
    assert all(entry["products_only_ms"] > 0 for entry in report["blocks"])
    assert report["scoring"][0]["m"] == 6 and report["scoring"][0]["speedup"] > 0
