"""POSO(MMoE): an MMoE whose experts are masked by a personalized gate."""

from __future__ import annotations

from typing import Any

import keras

from watchnext.models.layers.mmoe import MMoE
from watchnext.models.layers.poso_gate import PosoGate


@keras.saving.register_keras_serializable(package="watchnext")
class PosoMMoE(MMoE):
    """MMoE with each expert masked by its POSO gate before the task gates mix them.

        x_hat^t = C * sum_i g_i(x_pc) g^t_i(x) e_i(x),    g^t(x) = softmax(W^t x)

    `g` is a `PosoGate` with one sigmoid output per expert on the
    personalization code `x_pc` (the paper's simplification, Eq. 17, with as
    many personalized gates as experts). Everything else is `MMoE`: the same
    experts, task gates and gate dropout (on the task gates `g^t`, training
    only). At initialization `C * g = 1` exactly, so the layer equals an `MMoE`
    with the same expert and gate weights.

    Call arguments:
        inputs: float tensor `(batch, d_in)`.
        personalization_code: tensor `(batch, d_pc)`.
        training: Python bool; gate dropout only when True.

    Returns:
        As `MMoE`: `(batch, num_tasks, expert_units[-1])`, or with
        `return_gates=True` the tuple `(mixtures, task_gates)`. The personalized
        gates are read with `personalized_gates(x_pc)`.

    Example:

    ```python
    x = keras.Input((64,))
    x_pc = keras.Input((10,))
    mixtures = PosoMMoE(num_experts=4, expert_units=[32], num_tasks=2)(x, x_pc)   # (None, 2, 32)
    ```

    Args:
        scale: correction factor `C` of the personalized gate.
        gate_hidden_units: hidden width of the personalized gate MLP
            (default: `num_experts`).
        *args, **kwargs: as `MMoE`.
    """

    def __init__(
        self, *args: Any, scale: float = 2.0, gate_hidden_units: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.scale = float(scale)
        self.gate_hidden_units = gate_hidden_units
        self.personalized_gate = PosoGate(
            self.num_experts,
            gate_hidden_units,
            scale=scale,
            dtype=self.dtype_policy,
            name="personalized_gate",
        )

    def build(
        self, inputs_shape: tuple[int | None, ...], personalization_code_shape: tuple[int | None, ...]
    ) -> None:
        super().build(inputs_shape)
        if not self.personalized_gate.built:
            self.personalized_gate.build(tuple(personalization_code_shape))

    def personalized_gates(self, personalization_code: Any) -> Any:
        """`C * g(x_pc)`: `(batch, num_experts)`, one scale per expert."""
        return self.personalized_gate(personalization_code)

    def call(self, inputs: Any, personalization_code: Any, training: bool | None = None) -> Any:
        experts = self.expert_outputs(inputs) * keras.ops.expand_dims(
            self.personalized_gates(personalization_code), axis=-1
        )
        gates = self.gate_values(inputs, training=training)
        mixtures = self.mix(gates, experts)
        return (mixtures, gates) if self.return_gates else mixtures

    def compute_output_shape(
        self, inputs_shape: tuple[int | None, ...], personalization_code_shape: tuple[int | None, ...]
    ) -> Any:
        return super().compute_output_shape(inputs_shape)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"scale": self.scale, "gate_hidden_units": self.gate_hidden_units})
        return config
