"""A small click model: hashed id embeddings + context, for the first pipeline.

    p(click) = sigmoid(MLP([E_user[h(user)], E_item[h(item)], E_dev[h(device)],
                            E_surf[h(surface)], log1p(item_duration_s)]))

where h hashes a string into `num_bins` buckets. It exists so the first TFX
pipeline trains and pushes a real Keras 3 model; the multitask ranker replaces it.

Example:
    model = build_click_model(ClickModelConfig())
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(dataset_of_feature_dicts_and_click_labels)
"""

from __future__ import annotations

import dataclasses

import keras

from watchnext.models import features

CATEGORICAL_INPUTS = (features.USER_ID, features.ITEM_ID, features.DEVICE, features.SURFACE)
NUMERIC_INPUTS = (features.ITEM_DURATION_S,)
OUTPUT_NAME = "click_probability"


@dataclasses.dataclass(frozen=True)
class ClickModelConfig:
    num_bins: int = 10_000
    embedding_dim: int = 16
    hidden_units: tuple[int, ...] = (64, 32)
    learning_rate: float = 1e-3


def build_click_model(config: ClickModelConfig) -> keras.Model:
    inputs = {name: keras.Input(shape=(), dtype="string", name=name) for name in CATEGORICAL_INPUTS}
    inputs.update({name: keras.Input(shape=(), dtype="float32", name=name) for name in NUMERIC_INPUTS})
    pieces = []
    for name in CATEGORICAL_INPUTS:
        ids = keras.layers.Hashing(num_bins=config.num_bins, name=f"hash_{name}")(inputs[name])
        embedding = keras.layers.Embedding(config.num_bins, config.embedding_dim, name=f"embed_{name}")
        pieces.append(embedding(ids))
    for name in NUMERIC_INPUTS:
        pieces.append(keras.ops.expand_dims(keras.ops.log1p(keras.ops.maximum(inputs[name], 0.0)), -1))
    hidden = keras.layers.Concatenate()(pieces)
    for units in config.hidden_units:
        hidden = keras.layers.Dense(units, activation="relu")(hidden)
    output = keras.layers.Dense(1, activation="sigmoid")(hidden)
    output = keras.layers.Reshape((), name=OUTPUT_NAME)(output)
    model = keras.Model(inputs=inputs, outputs=output, name="click_model")
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc")],
    )
    return model
