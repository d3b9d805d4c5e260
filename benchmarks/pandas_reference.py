"""Single-process pandas implementation of FeatureGen and SequenceGen, for benchmarks/beam_features.py.

Same inputs (raw-log Examples) and the same outputs (serialized tf.Examples)
as the Beam components, computed with vectorized pandas group-bys instead of
shuffles; the benchmark checks that both give identical outputs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf

from watchnext.components import tf_example
from watchnext.components.feature_gen.point_in_time import FeatureGenConfig, derived_features
from watchnext.components.sequence_gen.sequences import SequenceEvent, leave_one_out
from watchnext.models import features as F


def load_frame(records_by_split: dict[str, list[bytes]]) -> pd.DataFrame:
    rows = []
    for split, records in records_by_split.items():
        for serialized in records:
            example = tf.train.Example.FromString(serialized)
            event = SequenceEvent.from_example(example)
            value = tf_example.scalar
            rows.append(
                (
                    split,
                    serialized,
                    value(example, F.USER_ID),
                    value(example, F.USER_FIRST_SEEN_TS),
                    value(example, F.ITEM_UPLOAD_TS),
                    *event,
                )
            )
    columns = ["split", "serialized", "user", "first_seen", "uploaded", *SequenceEvent._fields]
    return pd.DataFrame(rows, columns=columns)


def _user_aggregates(frame: pd.DataFrame, window: int) -> tuple[np.ndarray, np.ndarray]:
    ordered = frame.sort_values(["user", "timestamp", "click"], kind="stable")
    clicks = ordered["click"].to_numpy(np.int64)
    by_user = ordered.groupby("user", sort=False)
    clicks_before = (by_user["click"].cumsum().to_numpy() - clicks).astype(np.int64)
    local_index = by_user.cumcount().to_numpy()
    user_start = np.arange(len(ordered)) - local_index
    tie_first = ordered.assign(local=local_index).groupby(["user", "timestamp"], sort=False)["local"]
    first = tie_first.transform("min").to_numpy()
    start = np.maximum(first - window, 0)
    views = clicks_before[user_start + first]
    window_clicks = views - clicks_before[user_start + start]
    size = first - start
    rates = np.divide(window_clicks, size, out=np.zeros(len(size)), where=size > 0)
    result_views = np.empty(len(frame), np.int64)
    result_rates = np.empty(len(frame))
    result_views[ordered.index.to_numpy()] = views
    result_rates[ordered.index.to_numpy()] = rates
    return result_views, result_rates


def _item_exposures(frame: pd.DataFrame) -> np.ndarray:
    ordered = frame.sort_values(["item_id", "timestamp"], kind="stable")
    local_index = ordered.groupby("item_id", sort=False).cumcount()
    first = ordered.assign(local=local_index).groupby(["item_id", "timestamp"], sort=False)["local"]
    exposures = np.empty(len(frame), np.int64)
    exposures[ordered.index.to_numpy()] = first.transform("min").to_numpy()
    return exposures


def feature_gen(frame: pd.DataFrame, config: FeatureGenConfig) -> dict[str, list[bytes]]:
    views, rates = _user_aggregates(frame, config.recent_window)
    exposures = _item_exposures(frame)
    output: dict[str, list[bytes]] = {split: [] for split in frame["split"].unique()}
    columns = zip(
        frame["split"], frame["serialized"], frame["timestamp"], frame["first_seen"], frame["uploaded"],
        views, rates, exposures, strict=True,
    )  # fmt: skip
    for split, serialized, ts, first_seen, uploaded, view, rate, exposure in columns:
        example = tf.train.Example.FromString(serialized)
        derived = derived_features(
            int(ts), int(first_seen), int(uploaded), int(view), float(rate), int(exposure), config
        )
        for name, value in derived.items():
            tf_example.set_values(example, name, [value])
        output[split].append(example.SerializeToString())
    return output


def sequence_gen(frame: pd.DataFrame, max_len: int) -> dict[str, dict[str, list[bytes]]]:
    ordered = frame.sort_values(["user", *SequenceEvent._fields], kind="stable")
    output: dict[str, dict[str, list[bytes]]] = {
        kind: {"train": [], "test": []} for kind in ("retrieval", "ranking")
    }
    event_columns = list(SequenceEvent._fields)
    for user, group in ordered.groupby("user", sort=False):
        events = [SequenceEvent(*row) for row in group[event_columns].itertuples(index=False)]
        plays = [event for event in events if event.click == 1]
        for kind, chosen, with_labels in (("retrieval", plays, False), ("ranking", events, True)):
            for split, lists in leave_one_out(user, chosen[-(max_len + 2) :], max_len, with_labels):
                output[kind][split].append(tf_example.serialize(lists))
    return output
