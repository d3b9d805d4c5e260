"""Config plumbing shared by the HSTU models: dict-or-dataclass configs and `compile` defaults.

`config_from(value, ConfigClass, default)` accepts what `get_config` round trips produce (a dict)
as well as the dataclass itself.

A subclass of `keras.Model` that mixes this in defines `make_optimizer()` and `default_jit_compile`;
`model.compile()` then needs no arguments, and a saved model is re-compiled the same way on load.

Example:
    class MyModel(ConfigCompiledModel, keras.Model):
        default_jit_compile = True

        def make_optimizer(self):
            return keras.optimizers.Adam(1e-3)
"""

from __future__ import annotations

from typing import Any, TypeVar

import keras

ConfigT = TypeVar("ConfigT")


def config_from(
    value: ConfigT | dict[str, Any] | None, config_class: type[ConfigT], default: ConfigT
) -> ConfigT:
    """`value` itself, `config_class(**value)` for a dict (a deserialized config), or `default` for None."""
    if value is None:
        return default
    if isinstance(value, dict):
        return config_class(**value)
    return value


class ConfigCompiledModel:
    """Mixin: `compile` with the model's optimizer and jit defaults (no `loss` needed)."""

    default_jit_compile: bool = False

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        raise NotImplementedError

    def compile(self, optimizer: Any = None, jit_compile: Any = None, **kwargs: Any) -> None:
        super().compile(  # type: ignore[misc]
            optimizer=optimizer if optimizer is not None else self.make_optimizer(),
            jit_compile=self.default_jit_compile if jit_compile is None else jit_compile,
            **kwargs,
        )

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Re-compile a loaded model with its saved compile arguments (through this `compile`)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None and self.built:  # type: ignore[attr-defined]
            self.optimizer.build(self.trainable_variables)  # type: ignore[attr-defined]
