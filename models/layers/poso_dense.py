"""POSO(Linear/MLP): a dense layer whose every output unit is personalized."""

from __future__ import annotations

from typing import Any

import keras

from watchnext.models.layers.poso_gate import PosoGate


@keras.saving.register_keras_serializable(package="watchnext")
class PosoDense(keras.layers.Layer):
    """Dense layer masked unit-wise by a personalized POSO gate.

        x_hat = C * g(x_pc) ⊙ σ(W x + b)

    with `g` a `PosoGate` of `units` sigmoid outputs on the personalization
    code `x_pc` (one gate value per output unit, LHUC-like but driven by raw
    personalization features instead of second-hand activations). Stack one
    `PosoDense` per layer to get POSO(MLP); each layer has its own gate, all
    layers take the same `x_pc`. At initialization `C * g = 1` exactly, so
    the layer equals `keras.layers.Dense(units, activation)` with the same
    kernel.

    Call arguments:
        inputs: float tensor `(batch, d_in)` (or `(batch, ..., d_in)`).
        personalization_code: tensor `(batch, d_pc)`.

    Returns:
        `(batch, units)` (or `(batch, ..., units)`).

    Example:

    ```python
    x = keras.Input((128,))
    x_pc = keras.Input((10,))
    h = PosoDense(64)(x, x_pc)
    h = PosoDense(32)(h, x_pc)
    ```

    Args:
        units: output size.
        activation: `σ`.
        use_bias: whether the dense part has a bias.
        scale: correction factor `C` of the gate.
        gate_hidden_units: hidden width of the gate MLP (default: `units`).
        kernel_initializer: initializer of the dense kernel.
        kernel_regularizer: regularizer of the dense kernel.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        units: int,
        activation: Any = "relu",
        use_bias: bool = True,
        scale: float = 2.0,
        gate_hidden_units: int | None = None,
        kernel_initializer: Any = "glorot_uniform",
        kernel_regularizer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.scale = float(scale)
        self.gate_hidden_units = gate_hidden_units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.dense = keras.layers.Dense(
            self.units,
            activation=self.activation,
            use_bias=use_bias,
            kernel_initializer=self.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name="dense",
        )
        self.gate = PosoGate(self.units, gate_hidden_units, scale=scale, dtype=self.dtype_policy, name="gate")

    def build(
        self, inputs_shape: tuple[int | None, ...], personalization_code_shape: tuple[int | None, ...]
    ) -> None:
        self.dense.build(tuple(inputs_shape))
        self.gate.build(tuple(personalization_code_shape))

    def call(self, inputs: Any, personalization_code: Any) -> Any:
        gate = self.gate(personalization_code)
        outputs = self.dense(inputs)
        for _ in range(len(outputs.shape) - len(gate.shape)):
            gate = keras.ops.expand_dims(gate, axis=1)
        return outputs * gate

    def compute_output_shape(
        self, inputs_shape: tuple[int | None, ...], personalization_code_shape: tuple[int | None, ...]
    ) -> tuple[int | None, ...]:
        return tuple(inputs_shape)[:-1] + (self.units,)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "activation": keras.activations.serialize(self.activation),
                "use_bias": self.use_bias,
                "scale": self.scale,
                "gate_hidden_units": self.gate_hidden_units,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
            }
        )
        return config
