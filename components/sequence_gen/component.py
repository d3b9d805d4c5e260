"""The SequenceGen TFX component: per-user behaviour sequences with a leave-one-out split.

Outputs two Examples artifacts, each with splits `train` and `test`
(see sequences.py for the exact protocol):
  retrieval_sequences  plays only: history item ids / timestamps / actions + next item
                       (schemas/retrieval_sequences/schema.pbtxt)
  ranking_sequences    every impression with its multitask labels, for target-aware
                       ranking (schemas/ranking_sequences/schema.pbtxt)

Example:
    sequence_gen = SequenceGen(examples=log_example_gen.outputs["examples"], max_len=200)
    Trainer(examples=sequence_gen.outputs["retrieval_sequences"], ...)
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from watchnext.components.sequence_gen import executor
from watchnext.components.sequence_gen.sequences import DEFAULT_MAX_LEN


class SequenceGenSpec(types.ComponentSpec):
    PARAMETERS = {"max_len": ExecutionParameter(type=int)}
    INPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {
        "retrieval_sequences": ChannelParameter(type=standard_artifacts.Examples),
        "ranking_sequences": ChannelParameter(type=standard_artifacts.Examples),
    }


class SequenceGen(base_beam_component.BaseBeamComponent):
    """Leave-one-out user sequences on Beam, memory per user bounded by max_len."""

    SPEC_CLASS = SequenceGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, max_len: int = DEFAULT_MAX_LEN):
        spec = SequenceGenSpec(
            examples=examples,
            max_len=max_len,
            retrieval_sequences=types.Channel(type=standard_artifacts.Examples),
            ranking_sequences=types.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)
