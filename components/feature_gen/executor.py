"""Beam executor of FeatureGen (the transforms are in transforms.py)."""

from __future__ import annotations

import logging
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from watchnext.components import examples_io
from watchnext.components.feature_gen.point_in_time import FeatureGenConfig
from watchnext.components.feature_gen.transforms import add_point_in_time_features


class Executor(base_beam_executor.BaseBeamExecutor):
    """Adds point-in-time features to every example, keeping each in its split."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        config = FeatureGenConfig.from_json(exec_properties["config"])
        source = artifact_utils.get_single_instance(input_dict["examples"])
        output = artifact_utils.get_single_instance(output_dict["impressions"])
        splits = examples_io.split_names(source)
        output.split_names = artifact_utils.encode_split_names(splits)
        logging.info("FeatureGen: splits %s of %s -> %s (%s)", splits, source.uri, output.uri, config)

        with self._make_beam_pipeline() as pipeline:
            to_enrich = {s: examples_io.read_split(pipeline, source, s, "ToEnrich,") for s in splits}
            all_examples = examples_io.read_all_splits(pipeline, source, "ForTimelines")
            enriched = add_point_in_time_features(all_examples, to_enrich, config)
            for split, records in enriched.items():
                examples_io.write_split(records, output, split)
        examples_io.mark_tf_example_payload(output)
        logging.info("FeatureGen: wrote %s", output.uri)
