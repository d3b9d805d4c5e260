"""Beam executor of FeatureGen: point-in-time user, item and context features.

Plan (all splits together, since an item's exposures come from every user):

    1. impressions -> (user, (t, click)) -> GroupByKey -> user aggregates per distinct t
    2. impressions -> (item, t)          -> GroupByKey -> item exposures per distinct t
    3. impressions keyed (user, t) CoGroupByKey user aggregates, re-keyed (item, t)
    4. CoGroupByKey item exposures -> parse once, add every feature, serialize -> its split

A key's group holds compact (timestamp, click) pairs or one (key, t)'s
impressions, never a user's full examples, so memory stays small for users
and items with very long histories.
"""

from __future__ import annotations

import logging
from typing import Any

import apache_beam as beam
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils

from watchnext.components import examples_io
from watchnext.components.feature_gen.point_in_time import (
    FeatureGenConfig,
    derived_features,
    item_exposures_at_timestamps,
    user_features_at_timestamps,
)
from watchnext.models import features

# An impression travels as a plain tuple (cheap to encode between Beam stages).
SPLIT, SERIALIZED, USER, ITEM, TIMESTAMP, CLICK, FIRST_SEEN, UPLOADED = range(8)


def parse_impression(split_index: int, serialized: bytes) -> tuple:
    example = tf.train.Example.FromString(serialized)
    value = examples_io.scalar
    return (
        split_index,
        serialized,
        value(example, features.USER_ID),
        value(example, features.ITEM_ID),
        value(example, features.TIMESTAMP),
        value(example, features.CLICK, 0),
        value(example, features.USER_FIRST_SEEN_TS),
        value(example, features.ITEM_UPLOAD_TS),
    )


def _user_aggregates(user_events: tuple[bytes, list], recent_window: int):
    user, events = user_events
    for timestamp, views, rate in user_features_at_timestamps(events, recent_window):
        yield (user, timestamp), (views, rate)


def _item_aggregates(item_times: tuple[bytes, list]):
    item, timestamps = item_times
    for timestamp, exposures in item_exposures_at_timestamps(timestamps):
        yield (item, timestamp), exposures


def _attach_user(joined: tuple[tuple, dict[str, list]]):
    (_, timestamp), groups = joined
    ((views, rate),) = groups["user"]
    for impression in groups["impressions"]:
        yield (impression[ITEM], timestamp), (impression, views, rate)


def _finish(joined: tuple[tuple, dict[str, list]], config: FeatureGenConfig):
    _, groups = joined
    (exposures,) = groups["item"]
    for impression, views, rate in groups["impressions"]:
        example = tf.train.Example.FromString(impression[SERIALIZED])
        derived = derived_features(
            impression[TIMESTAMP],
            impression[FIRST_SEEN],
            impression[UPLOADED],
            views,
            rate,
            exposures,
            config,
        )
        for name, value in derived.items():
            examples_io.set_values(example, name, [value])
        yield impression[SPLIT], example.SerializeToString()


def add_point_in_time_features(
    examples_by_split: list[beam.PCollection], config: FeatureGenConfig
) -> beam.PCollection:
    """(split index, serialized example with features) for every input example."""
    impressions = (
        [
            examples | f"Tag[{index}]" >> beam.Map(lambda b, i=index: (i, b))
            for index, examples in enumerate(examples_by_split)
        ]
        | "AllSplits" >> beam.Flatten()
        | "Parse" >> beam.MapTuple(parse_impression)
    )
    user_aggregates = (
        impressions
        | "UserEvents" >> beam.Map(lambda r: (r[USER], (r[TIMESTAMP], r[CLICK])))
        | "GroupUsers" >> beam.GroupByKey()
        | "UserAggregates" >> beam.FlatMap(_user_aggregates, config.recent_window)
    )
    item_aggregates = (
        impressions
        | "ItemEvents" >> beam.Map(lambda r: (r[ITEM], r[TIMESTAMP]))
        | "GroupItems" >> beam.GroupByKey()
        | "ItemAggregates" >> beam.FlatMap(_item_aggregates)
    )
    with_user = (
        {
            "impressions": impressions | "ByUserTime" >> beam.Map(lambda r: ((r[USER], r[TIMESTAMP]), r)),
            "user": user_aggregates,
        }
        | "JoinUser" >> beam.CoGroupByKey()
        | "AttachUser" >> beam.FlatMap(_attach_user)
    )
    return (
        {"impressions": with_user, "item": item_aggregates}
        | "JoinItem" >> beam.CoGroupByKey()
        | "AddFeatures" >> beam.FlatMap(_finish, config)
    )


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
            inputs = [examples_io.read_split(pipeline, source, split) for split in splits]
            enriched = add_point_in_time_features(inputs, config)
            by_split = enriched | "BySplit" >> beam.Partition(lambda r, _: r[0], len(splits))
            for index, split in enumerate(splits):
                records = by_split[index] | f"Drop[{split}]" >> beam.Map(lambda r: r[1])
                examples_io.write_split(records, output, split)
        examples_io.mark_tf_example_payload(output)
        logging.info("FeatureGen: wrote %s", output.uri)
