"""The FeatureGen TFX component: raw-log Examples -> impression Examples with point-in-time features.

Adds, to every impression, user features (accumulated view count raw and
bucketized, hours since first seen, new-user flag, cohort, recent click rate),
item features (age in days, exposure count so far, new-item flag) and context
(hour of day; position, device and surface pass through), each computed only
from events strictly before the impression (see point_in_time.py). Splits are
kept as they come. The output schema is `schemas/impressions/schema.pbtxt`.

Example:
    feature_gen = FeatureGen(examples=log_example_gen.outputs["examples"])
    StatisticsGen(examples=feature_gen.outputs["impressions"])
"""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from watchnext.components.feature_gen import executor
from watchnext.components.feature_gen.point_in_time import FeatureGenConfig


class FeatureGenSpec(types.ComponentSpec):
    PARAMETERS = {"config": ExecutionParameter(type=str)}
    INPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {"impressions": ChannelParameter(type=standard_artifacts.Examples)}


class FeatureGen(base_beam_component.BaseBeamComponent):
    """Point-in-time user/item/context features on Beam."""

    SPEC_CLASS = FeatureGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, config: FeatureGenConfig | None = None):
        spec = FeatureGenSpec(
            examples=examples,
            config=(config or FeatureGenConfig()).to_json(),
            impressions=types.Channel(type=standard_artifacts.Examples),
        )
        super().__init__(spec=spec)
