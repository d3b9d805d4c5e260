"""Layers of the multitask ranker: MMoE, shallow bias tower, POSO modules."""

from __future__ import annotations

import pathlib

import keras
import numpy as np
import pytest
from keras import ops

from watchnext.models import layers as ranking_layers
from watchnext.models.layers import (
    MMoE,
    PosoDense,
    PosoGate,
    PosoMMoE,
    PosoMultiHeadAttention,
    ShallowBiasTower,
    gate_polarization,
)

BATCH, D_IN, D_PC = 8, 5, 3


def numpy(x):
    return ops.convert_to_numpy(x)


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


@pytest.fixture()
def x(rng):
    return rng.normal(size=(BATCH, D_IN)).astype("float32")


@pytest.fixture()
def pc(rng):
    return rng.normal(size=(BATCH, D_PC)).astype("float32")


def randomize(layer, rng, scale=0.5):
    for weight in layer.trainable_weights:
        weight.assign(rng.normal(size=weight.shape, scale=scale).astype("float32"))


# MMoE


def test_mmoe_shapes(x):
    mmoe = MMoE(num_experts=3, expert_units=[6, 4], num_tasks=2)
    assert tuple(mmoe(x).shape) == (BATCH, 2, 4)
    mixtures, gates = MMoE(3, [4], 2, return_gates=True)(x)
    assert tuple(mixtures.shape) == (BATCH, 2, 4) and tuple(gates.shape) == (BATCH, 2, 3)


def test_mmoe_eval_gates_sum_to_one_and_mix_experts(x, rng):
    mmoe = MMoE(num_experts=4, expert_units=[4], num_tasks=3, gate_dropout=0.5, return_gates=True)
    mmoe.build(x.shape)
    randomize(mmoe, rng)
    mixtures, gates = (numpy(t) for t in mmoe(x, training=False))
    np.testing.assert_allclose(gates.sum(-1), 1.0, rtol=1e-6)
    assert (gates > 0).all()
    np.testing.assert_array_equal(gates, numpy(mmoe.gates(x)))
    expected = np.einsum("btn,bnd->btd", gates, numpy(mmoe.expert_outputs(x)))
    np.testing.assert_allclose(mixtures, expected, rtol=1e-5, atol=1e-6)


def test_mmoe_gate_dropout_renormalizes(rng):
    rate, experts = 0.1, 4
    x = rng.normal(size=(2000, D_IN)).astype("float32")
    mmoe = MMoE(experts, [2], num_tasks=2, gate_dropout=rate, return_gates=True, seed=1)
    eval_gates = numpy(mmoe.gates(x))
    _, train_gates = mmoe(x, training=True)
    train_gates = numpy(train_gates)
    np.testing.assert_allclose(train_gates.sum(-1), 1.0, rtol=1e-5)
    dropped = train_gates == 0.0
    assert dropped.any() and not (eval_gates == 0.0).any()
    assert abs(dropped.mean() - rate) < 0.02  # 16,000 draws: std ~0.0024
    # Kept values are the eval gates renormalized over the kept experts.
    kept_mass = np.where(dropped, 0.0, eval_gates).sum(-1, keepdims=True)
    np.testing.assert_allclose(np.where(dropped, 0.0, eval_gates / kept_mass), train_gates, rtol=1e-5)


def test_mmoe_gate_dropout_keeps_gate_when_all_dropped(rng):
    x = rng.normal(size=(500, D_IN)).astype("float32")
    mmoe = MMoE(2, [2], num_tasks=1, gate_dropout=0.95, return_gates=True, seed=3)
    eval_gates = numpy(mmoe.gates(x))
    train_gates = numpy(mmoe(x, training=True)[1])
    np.testing.assert_allclose(train_gates.sum(-1), 1.0, rtol=1e-5)
    untouched = (train_gates > 0).all(-1)  # all dropped (or all kept) -> the original gate
    assert untouched.mean() > 0.8
    np.testing.assert_allclose(train_gates[untouched], eval_gates[untouched], rtol=1e-6)


def test_mmoe_no_gate_dropout_in_eval(x):
    mmoe = MMoE(4, [2], 2, gate_dropout=0.9, return_gates=True)
    first, second = numpy(mmoe(x)[1]), numpy(mmoe(x, training=False)[1])
    np.testing.assert_array_equal(first, second)
    assert (first > 0).all()


def test_gate_polarization():
    uniform = np.full((10, 1, 4), 0.25, dtype="float32")
    one_hot = np.tile(np.array([[[1.0, 0.0, 0.0, 0.0]]], dtype="float32"), (10, 1, 1))
    share = numpy(gate_polarization(np.concatenate([uniform, one_hot], axis=1)))
    np.testing.assert_allclose(share, [0.0, 0.75])


# Shallow bias tower


def test_bias_tower_output_shape_and_input_ranks():
    tower = ShallowBiasTower(num_positions=5, num_devices=4)
    position, device = np.array([0, 1, 5, 9]), np.array([0, 1, 2, 3])
    out = numpy(tower(position, device))
    assert out.shape == (4, 1)
    np.testing.assert_array_equal(numpy(tower(position[:, None], device[:, None])), out)


def test_bias_tower_indices_missing_and_clipping():
    tower = ShallowBiasTower(num_positions=5, num_devices=3)
    pos, dev, cross = (
        numpy(t) for t in tower.indices(np.array([0, -2, 1, 5, 99]), np.array([2, 0, 1, 2, 7]))
    )
    np.testing.assert_array_equal(pos, [0, 0, 1, 5, 5])
    np.testing.assert_array_equal(dev, [2, 0, 1, 2, 2])
    np.testing.assert_array_equal(cross, pos * 3 + dev)


def test_bias_tower_missing_position_has_own_embedding(rng):
    tower = ShallowBiasTower(num_positions=4, num_devices=2, embedding_dim=3, hidden_units=[5])
    tower.build()
    randomize(tower, rng)
    out = numpy(tower(np.array([0, 0]), np.array([0, 1])))
    pieces = [
        tower.position_embedding.embeddings[0],
        tower.device_embedding.embeddings[1],
        tower.cross_embedding.embeddings[0 * 2 + 1],
    ]
    hidden = tower.hidden[0](ops.expand_dims(ops.concatenate([numpy(p) for p in pieces], 0), 0))
    np.testing.assert_allclose(out[1], numpy(tower.logit(hidden))[0], rtol=1e-5)
    table = tower.bias_table()
    assert table.shape == (5, 2)
    np.testing.assert_allclose(table[0], out[:, 0], rtol=1e-6)
    assert not np.allclose(table[0], table[1])  # the missing row is learned on its own


def test_bias_tower_position_dropout_only_in_training(rng):
    tower = ShallowBiasTower(num_positions=6, num_devices=2, position_dropout=0.3, seed=2)
    tower.build()
    randomize(tower, rng)
    position, device = np.full((2000,), 3), np.arange(2000) % 2
    np.testing.assert_array_equal(numpy(tower.indices(position, device, training=False)[0]), position)
    dropped = numpy(tower.indices(position, device, training=True)[0]) == 0
    assert abs(dropped.mean() - 0.3) < 0.04
    table = tower.bias_table()
    eval_out = numpy(tower(position, device, training=False))[:, 0]
    np.testing.assert_allclose(eval_out, table[3, device], rtol=1e-6)
    train_out = numpy(tower(position, device, training=True))[:, 0]
    is_missing = np.isclose(train_out, table[0, device], rtol=1e-6)
    assert np.isclose(train_out[~is_missing], table[3, device[~is_missing]], rtol=1e-6).all()
    assert 0.2 < is_missing.mean() < 0.4


# POSO


def test_poso_gate_is_exactly_one_at_init(pc):
    gate = PosoGate(units=7, hidden_units=4)
    np.testing.assert_array_equal(numpy(gate(pc)), np.ones((BATCH, 7), "float32"))
    np.testing.assert_array_equal(numpy(PosoGate(3, scale=3.0)(pc)), np.full((BATCH, 3), 1.5, "float32"))


def test_poso_gate_range_after_training_like_update(pc, rng):
    gate = PosoGate(units=7, scale=2.0)
    gate.build(pc.shape)
    randomize(gate, rng, scale=0.5)
    out = numpy(gate(pc))
    assert ((out > 0) & (out < 2.0)).all() and not np.allclose(out, 1.0)
    assert np.unique(out.round(4)).size > 7  # varies with the personalization code


def test_poso_dense_equals_plain_dense_at_init(x, pc):
    poso = PosoDense(6, activation="relu")
    out = numpy(poso(x, pc))
    plain = keras.layers.Dense(6, activation="relu")
    plain.build(x.shape)
    plain.set_weights(poso.dense.get_weights())
    np.testing.assert_allclose(out, numpy(plain(x)), rtol=1e-6, atol=0)


def test_poso_dense_gates_each_unit(x, pc):
    poso = PosoDense(4, activation="sigmoid")
    poso(x, pc)
    bias = np.array([-3.0, -1.0, 1.0, 3.0], "float32")
    poso.gate.output_dense.bias.assign(bias)
    expected = 2.0 / (1.0 + np.exp(-bias)) * numpy(poso.dense(x))
    np.testing.assert_allclose(numpy(poso(x, pc)), expected, rtol=1e-5)


def test_poso_mmoe_equals_mmoe_at_init(x, pc, rng):
    mmoe = MMoE(3, [5, 4], 2)
    mmoe.build(x.shape)
    randomize(mmoe, rng)
    poso = PosoMMoE(3, [5, 4], 2)
    poso.build(x.shape, pc.shape)
    for mine, theirs in zip(poso.experts + poso.task_gates, mmoe.experts + mmoe.task_gates, strict=True):
        mine.set_weights(theirs.get_weights())
    np.testing.assert_allclose(numpy(poso(x, pc)), numpy(mmoe(x)), rtol=1e-6, atol=1e-7)
    # A trained personalized gate scales each expert before the task gates mix them.
    bias = np.array([-2.0, 0.5, 2.0], "float32")
    poso.personalized_gate.output_dense.bias.assign(bias)
    scale = 2.0 / (1.0 + np.exp(-bias))
    expected = np.einsum("btn,bnd->btd", numpy(mmoe.gates(x)), numpy(mmoe.expert_outputs(x)) * scale[:, None])
    np.testing.assert_allclose(numpy(poso(x, pc)), expected, rtol=1e-5, atol=1e-6)


def _attention_inputs(rng, q_len=3, kv_len=5, dim=6):
    query = rng.normal(size=(BATCH, q_len, dim)).astype("float32")
    value = rng.normal(size=(BATCH, kv_len, dim)).astype("float32")
    mask = rng.random((BATCH, q_len, kv_len)) > 0.4
    mask[:, :, 0] = True
    return query, value, mask


def test_poso_attention_shape(rng, pc):
    query, value, _ = _attention_inputs(rng)
    layer = PosoMultiHeadAttention(num_heads=2, key_dim=4, value_dim=3, num_value_projections=3)
    assert tuple(layer(query, value, pc).shape) == (BATCH, 3, 6)
    out, scores = PosoMultiHeadAttention(2, 4, output_dim=7)(query, value, pc, return_attention_scores=True)
    assert tuple(out.shape) == (BATCH, 3, 7) and tuple(scores.shape) == (BATCH, 2, 3, 5)


def test_poso_attention_respects_mask(rng, pc):
    query, value, mask = _attention_inputs(rng)
    layer = PosoMultiHeadAttention(num_heads=2, key_dim=4)
    out, scores = layer(query, value, pc, attention_mask=mask, return_attention_scores=True)
    assert (numpy(scores)[np.broadcast_to(~mask[:, None], scores.shape)] == 0).all()
    # Changing a key/value that query 0 of example 0 may not attend to leaves that output unchanged.
    blocked = 2
    mask[0, 0, blocked] = False
    before = numpy(layer(query, value, pc, attention_mask=mask))
    changed = value.copy()
    changed[0, blocked] += 10.0
    after = numpy(layer(query, changed, pc, attention_mask=mask))
    np.testing.assert_allclose(after[0, 0], before[0, 0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(numpy(layer(query, changed, pc)), numpy(layer(query, value, pc)))


def test_poso_attention_causal_mask(rng, pc):
    sequence = rng.normal(size=(BATCH, 4, 6)).astype("float32")
    layer = PosoMultiHeadAttention(num_heads=2, key_dim=4)
    before = numpy(layer(sequence, sequence, pc, use_causal_mask=True))
    changed = sequence.copy()
    changed[:, 3] += 5.0
    after = numpy(layer(changed, changed, pc, use_causal_mask=True))
    np.testing.assert_allclose(after[:, :3], before[:, :3], rtol=1e-5, atol=1e-6)


def test_poso_attention_equals_plain_attention_at_init(rng, pc):
    query, value, mask = _attention_inputs(rng)
    poso = PosoMultiHeadAttention(num_heads=2, key_dim=4, value_dim=3, num_value_projections=3)
    out = numpy(poso(query, value, pc, attention_mask=mask))
    plain = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, value_dim=3)
    plain(query, value)
    value_kernel, value_bias = (
        np.sum(w, axis=1 if w.ndim == 4 else 0) for w in poso.value_dense.get_weights()
    )
    plain.query_dense.set_weights(poso.query_dense.get_weights())
    plain.key_dense.set_weights(poso.key_dense.get_weights())
    plain.value_dense.set_weights([value_kernel, value_bias])
    plain.output_dense.set_weights(poso.output_dense.get_weights())
    np.testing.assert_allclose(out, numpy(plain(query, value, attention_mask=mask)), rtol=1e-4, atol=1e-5)


def test_poso_attention_gates_personalize_keys_and_values(rng, pc):
    query, value, _ = _attention_inputs(rng)
    layer = PosoMultiHeadAttention(num_heads=2, key_dim=4, num_value_projections=2)
    before = numpy(layer(query, value, pc))
    layer.value_gate.output_dense.bias.assign(np.array([-4.0, 4.0], "float32"))
    after_value = numpy(layer(query, value, pc))
    assert not np.allclose(before, after_value)
    layer.key_gate.output_dense.bias.assign(rng.normal(size=(8,), scale=2.0).astype("float32"))
    assert not np.allclose(after_value, numpy(layer(query, value, pc)))


# Serialization


LAYER_FACTORIES = {
    "mmoe": lambda: MMoE(3, [4, 2], 2, gate_dropout=0.2, gate_use_bias=True, return_gates=True, seed=4),
    "tower": lambda: ShallowBiasTower(7, 4, embedding_dim=2, hidden_units=[3], position_dropout=0.2),
    "gate": lambda: PosoGate(5, hidden_units=3, scale=3.0),
    "dense": lambda: PosoDense(4, activation="tanh", scale=2.5, gate_hidden_units=6),
    "poso_mmoe": lambda: PosoMMoE(3, [4], 2, gate_dropout=0.0, scale=1.5, gate_hidden_units=2),
    "attention": lambda: PosoMultiHeadAttention(2, 4, value_dim=3, num_value_projections=2, output_dim=5),
}


@pytest.mark.parametrize("name", sorted(LAYER_FACTORIES))
def test_get_config_round_trip(name):
    layer = LAYER_FACTORIES[name]()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == config


def _tiny_model() -> keras.Model:
    x = keras.Input((D_IN,), name="x")
    pc = keras.Input((D_PC,), name="pc")
    position = keras.Input((), dtype="int32", name="position")
    device = keras.Input((), dtype="int32", name="device")
    sequence = keras.Input((4, 6), name="sequence")
    mask = keras.Input((1, 4), dtype="bool", name="mask")
    mixtures, gates = LAYER_FACTORIES["mmoe"]()(x)
    hidden = LAYER_FACTORIES["dense"]()(x, pc)
    outputs = {
        "mixtures": mixtures,
        "gates": gates,
        "poso_dense": PosoGate(4)(pc) * hidden,
        "poso_mmoe": LAYER_FACTORIES["poso_mmoe"]()(hidden, pc),
        "bias": LAYER_FACTORIES["tower"]()(position, device),
        "attention": LAYER_FACTORIES["attention"]()(sequence[:, :1], sequence, pc, attention_mask=mask),
    }
    inputs = {"x": x, "pc": pc, "position": position, "device": device, "sequence": sequence, "mask": mask}
    return keras.Model(inputs, outputs)


def test_save_load_equal_outputs(tmp_path, rng):
    model = _tiny_model()
    randomize(model, rng)
    batch = {
        "x": rng.normal(size=(BATCH, D_IN)).astype("float32"),
        "pc": rng.normal(size=(BATCH, D_PC)).astype("float32"),
        "position": rng.integers(0, 10, size=(BATCH,)).astype("int32"),
        "device": rng.integers(0, 4, size=(BATCH,)).astype("int32"),
        "sequence": rng.normal(size=(BATCH, 4, 6)).astype("float32"),
        "mask": rng.random((BATCH, 1, 4)) > 0.3,
    }
    expected = model(batch, training=False)
    path = tmp_path / "x.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    actual = loaded(batch, training=False)
    assert set(actual) == set(expected)
    for key in expected:
        np.testing.assert_allclose(numpy(actual[key]), numpy(expected[key]), rtol=1e-6, err_msg=key)


RANKING_LAYER_FILES = (
    "mmoe.py",
    "shallow_bias_tower.py",
    "poso_gate.py",
    "poso_dense.py",
    "poso_mmoe.py",
    "poso_attention.py",
)


def test_layers_use_keras_ops_only():
    for name in RANKING_LAYER_FILES:
        text = (pathlib.Path(ranking_layers.__file__).parent / name).read_text()
        assert "tensorflow" not in text and "tf." not in text, name
