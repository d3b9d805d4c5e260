"""POSO personalized gate: `C * sigmoid(MLP(x_pc))`.

Reference: Dai et al., "POSO: Personalized Cold Start Modules for Large-scale
Recommender Systems" (Kuaishou, 2021).
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="watchnext")
class PosoGate(keras.layers.Layer):
    """Personalized gate of POSO, driven only by the personalization code.

    A two-layer MLP with sigmoid outputs, scaled by the correction factor `C`:

        g(x_pc) = C * sigmoid(W_2 act(W_1 x_pc + b_1) + b_2)    in (0, C)^units

    `x_pc` is the personalization code: the raw features that define the user
    (or item) group, e.g. a one-hot of the bucketized accumulated view count
    and the new-user flag. Every POSO module of a model takes the same `x_pc`.

    The last layer starts at zero kernel and bias (`output_initializer`), so an
    untrained gate outputs exactly `sigmoid(0) = 0.5` and `C * 0.5 = 1` for the
    default `C = 2`: a POSO module starts as its plain counterpart. The first
    layer still learns after the first step (its gradient flows through the
    last kernel once that kernel is non-zero).

    Call arguments:
        inputs: tensor `(batch, d_pc)` (cast to the layer's compute dtype).

    Returns:
        `(batch, units)`, values in `(0, C)`.

    Example:

    ```python
    x_pc = keras.ops.one_hot(view_count_bucket, 10)   # (batch, 10)
    gate = PosoGate(units=64)
    scale = gate(x_pc)                                # (batch, 64), all 1.0 at init
    ```

    Args:
        units: number of gate outputs (one per gated unit / expert / head).
        hidden_units: width of the hidden layer (default: `units`).
        scale: correction factor `C`.
        hidden_activation: activation of the hidden layer.
        kernel_initializer: initializer of the hidden kernel.
        output_initializer: initializer of the last kernel and bias.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        units: int,
        hidden_units: int | None = None,
        scale: float = 2.0,
        hidden_activation: str = "relu",
        kernel_initializer: Any = "glorot_uniform",
        output_initializer: Any = "zeros",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = int(units)
        self.hidden_units = int(hidden_units or units)
        self.scale = float(scale)
        self.hidden_activation = hidden_activation
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.output_initializer = keras.initializers.get(output_initializer)
        self.hidden = keras.layers.Dense(
            self.hidden_units,
            activation=hidden_activation,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name="hidden",
        )
        self.output_dense = keras.layers.Dense(
            self.units,
            activation="sigmoid",
            kernel_initializer=self.output_initializer,
            bias_initializer=self.output_initializer,
            dtype=self.dtype_policy,
            name="output",
        )

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.hidden.build(tuple(input_shape))
        self.output_dense.build(tuple(input_shape)[:-1] + (self.hidden_units,))

    def call(self, inputs: Any) -> Any:
        hidden = self.hidden(keras.ops.cast(inputs, self.compute_dtype))
        return self.output_dense(hidden) * self.scale

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return tuple(input_shape)[:-1] + (self.units,)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "hidden_units": self.hidden_units,
                "scale": self.scale,
                "hidden_activation": self.hidden_activation,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "output_initializer": keras.initializers.serialize(self.output_initializer),
            }
        )
        return config
