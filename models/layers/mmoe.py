"""Multi-gate Mixture-of-Experts (MMoE) with gate dropout.

Reference: Zhao et al., "Recommending What Video to Watch Next: A Multitask
Ranking System", RecSys 2019 (MMoE of Ma et al., KDD 2018, plus gate dropout).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="watchnext")
class MMoE(keras.layers.Layer):
    """Multi-gate Mixture-of-Experts: shared experts, one softmax gate per task.

    For an input `x` of shape `(batch, d_in)`, `N` experts `e_j` (MLPs with
    `expert_units` hidden sizes, `expert_activation` after every layer) and
    `T` tasks:

        g^t(x) = softmax(W^t x)                       in R^N, one gate per task
        f^t(x) = sum_j g^t_j(x) e_j(x)                in R^{expert_units[-1]}

    Gate dropout (training only): each gate value `g^t_j(x)` is zeroed with
    probability `gate_dropout`, independently per example, task and expert,
    and the gate is renormalized to sum to 1:

        m_j ~ Bernoulli(1 - gate_dropout),   g~^t_j = m_j g^t_j / sum_k m_k g^t_k

    If every expert of a gate is dropped, that gate is kept unchanged. This
    fixes gate polarization (one expert takes all the weight of a task).

    Call arguments:
        inputs: float tensor `(batch, d_in)`.
        training: Python bool; gate dropout only when True.

    Returns:
        The per-task mixtures stacked as `(batch, num_tasks, expert_units[-1])`
        (task `t` is `outputs[:, t]`); with `return_gates=True`, the tuple
        `(mixtures, gates)` where `gates` is `(batch, num_tasks, num_experts)`
        (after gate dropout in training).

    Example:

    ```python
    x = keras.random.normal((32, 64))
    mmoe = MMoE(num_experts=4, expert_units=[64, 32], num_tasks=2)
    mixtures = mmoe(x)                      # (32, 2, 32)
    click_tower_input = mixtures[:, 0]       # (32, 32)
    gates = mmoe.gates(x)                    # (32, 2, 4), eval mode
    share_dead = gate_polarization(gates)    # (2,), share of experts with mean gate < 0.01
    ```

    Args:
        num_experts: number of shared experts `N`.
        expert_units: hidden sizes of each expert MLP; the last is the output size.
        num_tasks: number of tasks `T` (one gate each).
        gate_dropout: probability of zeroing one gate value in training.
        expert_activation: activation after every expert layer.
        gate_use_bias: whether the gates are `softmax(W^t x + b^t)`.
        return_gates: whether `call` also returns the gates.
        kernel_initializer: initializer of expert and gate kernels.
        kernel_regularizer: regularizer of expert and gate kernels.
        seed: seed of the gate-dropout random draws.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).
    """

    def __init__(
        self,
        num_experts: int,
        expert_units: list[int],
        num_tasks: int,
        gate_dropout: float = 0.1,
        expert_activation: str = "relu",
        gate_use_bias: bool = False,
        return_gates: bool = False,
        kernel_initializer: Any = "glorot_uniform",
        kernel_regularizer: Any = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_experts < 1 or num_tasks < 1 or not expert_units:
            raise ValueError("MMoE needs num_experts >= 1, num_tasks >= 1 and non-empty expert_units.")
        if not 0.0 <= gate_dropout < 1.0:
            raise ValueError(f"gate_dropout must be in [0, 1), got {gate_dropout}.")
        self.num_experts = num_experts
        self.expert_units = [int(u) for u in expert_units]
        self.num_tasks = num_tasks
        self.gate_dropout = float(gate_dropout)
        self.expert_activation = expert_activation
        self.gate_use_bias = gate_use_bias
        self.return_gates = return_gates
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.experts = [self._make_expert(j) for j in range(num_experts)]
        self.task_gates = [
            self._dense(num_experts, None, gate_use_bias, f"gate_{t}") for t in range(num_tasks)
        ]

    def _dense(self, units: int, activation: str | None, use_bias: bool, name: str) -> keras.layers.Dense:
        return keras.layers.Dense(
            units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=keras.initializers.get(keras.initializers.serialize(self.kernel_initializer)),
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )

    def _make_expert(self, j: int) -> keras.Sequential:
        layers = [
            self._dense(units, self.expert_activation, True, f"dense_{k}")
            for k, units in enumerate(self.expert_units)
        ]
        return keras.Sequential(layers, name=f"expert_{j}")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        # Sub-layers may already be built by a helper (`gates`, `expert_outputs`) called before `call`.
        for sublayer in self.experts + self.task_gates:
            if not sublayer.built:
                sublayer.build(tuple(input_shape))

    def expert_outputs(self, inputs: Any) -> Any:
        """Stacked expert outputs `e_j(x)`: `(batch, num_experts, expert_units[-1])`."""
        return ops.stack([expert(inputs) for expert in self.experts], axis=1)

    def gate_values(self, inputs: Any, training: bool | None = None) -> Any:
        """Task gates `g^t(x)`: `(batch, num_tasks, num_experts)`, dropped out in training."""
        gates = ops.stack([ops.softmax(gate(inputs), axis=-1) for gate in self.task_gates], axis=1)
        if training and self.gate_dropout > 0.0:
            gates = self._drop_gates(gates)
        return gates

    def _drop_gates(self, gates: Any) -> Any:
        keep = keras.random.uniform(ops.shape(gates), seed=self.seed_generator) >= self.gate_dropout
        kept = ops.where(keep, gates, ops.zeros_like(gates))
        total = ops.sum(kept, axis=-1, keepdims=True)
        safe_total = ops.where(total > 0.0, total, ops.ones_like(total))
        return ops.where(total > 0.0, kept / safe_total, gates)

    @staticmethod
    def mix(gates: Any, experts: Any) -> Any:
        """`f^t = sum_j g^t_j e_j`: gates `(B, T, N)`, experts `(B, N, D)` -> `(B, T, D)`."""
        return ops.einsum("btn,bnd->btd", gates, experts)

    def gates(self, inputs: Any) -> Any:
        """Eval-mode gates `(batch, num_tasks, num_experts)`, for diagnostics."""
        return self.gate_values(inputs, training=False)

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        gates = self.gate_values(inputs, training=training)
        mixtures = self.mix(gates, self.expert_outputs(inputs))
        return (mixtures, gates) if self.return_gates else mixtures

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> Any:
        mixtures = (input_shape[0], self.num_tasks, self.expert_units[-1])
        gates = (input_shape[0], self.num_tasks, self.num_experts)
        return (mixtures, gates) if self.return_gates else mixtures

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "num_experts": self.num_experts,
                "expert_units": list(self.expert_units),
                "num_tasks": self.num_tasks,
                "gate_dropout": self.gate_dropout,
                "expert_activation": self.expert_activation,
                "gate_use_bias": self.gate_use_bias,
                "return_gates": self.return_gates,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "seed": self.seed,
            }
        )
        return config


def gate_polarization(gates: Any, threshold: float = 0.01) -> Any:
    """Share of experts whose mean gate value is below `threshold`, per task.

    `gates` is `(batch, num_tasks, num_experts)` (e.g. `MMoE.gates(x)` over a
    validation batch); returns `(num_tasks,)`. A value near `1 - 1/N` means one
    expert takes all the weight of that task (polarized gate).
    """
    mean_gate = ops.mean(ops.convert_to_tensor(gates), axis=0)
    return ops.mean(ops.cast(mean_gate < threshold, "float32"), axis=-1)
