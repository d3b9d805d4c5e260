"""Point-in-time feature arithmetic (pure NumPy; the Beam transforms call it per key).

Every feature of an impression at time t is computed from events with
timestamp strictly less than t: events at the same second as the impression,
its own included, are not seen. So the features depend only on (user, t) and
(item, t): a per-user and a per-item timeline of compact arrays answer them.

For a user with impressions at times t_1 <= t_2 <= ... and clicks c_i:

    user_view_count(t)         = sum_{i: t_i < t} c_i               (prior plays)
    user_recent_click_rate(t)  = mean of c_i over the last W impressions with t_i < t
                                 (0 when there is none)
    user_view_count_bucket(t)  = number of boundaries b with b <= user_view_count(t)
    user_hours_since_first_seen = (t - user_first_seen_ts) / 3600
    user_is_new                = hours_since_first_seen < T_du
    user_cohort                = "new" if user_is_new, else "light" if view_count < light_max, else "regular"

For an item with impressions at times s_1 <= s_2 <= ...:

    item_exposure_count(t) = #{j: s_j < t}
    item_age_days          = (t - item_upload_ts) / 86400
    item_is_new            = item_age_days < T_dv and item_exposure_count(t) < T_s

Example:
    >>> UserTimeline.from_events([(10, 1), (10, 0), (20, 1)], recent_window=50).at(20)
    (1, 0.5)
    >>> ItemTimeline.from_timestamps([7, 3, 7]).exposures_before(7)
    1
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable

import numpy as np

from watchnext.components.cohorts import CohortThresholds
from watchnext.models import features

SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86400


@dataclasses.dataclass(frozen=True)
class FeatureGenConfig:
    """Knobs of FeatureGen; the defaults are the documented POSO/YouTube-style choices."""

    thresholds: CohortThresholds = CohortThresholds()
    # Bucket boundaries of the accumulated view count (POSO's personalization code).
    view_count_boundaries: tuple[int, ...] = (1, 3, 10, 30, 100, 300, 1000)
    # Impressions looked back for the recent click rate.
    recent_window: int = 50

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> FeatureGenConfig:
        raw = json.loads(text)
        return cls(
            thresholds=CohortThresholds(**raw["thresholds"]),
            view_count_boundaries=tuple(raw["view_count_boundaries"]),
            recent_window=int(raw["recent_window"]),
        )


def _sorted_arrays(pairs: Iterable[tuple[int, int]] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(pairs, np.ndarray):
        data = pairs.astype(np.int64).reshape(-1)
    else:
        data = np.fromiter((v for pair in pairs for v in pair), dtype=np.int64)
    timestamps, values = data[0::2], data[1::2]
    # Ordering ties by value too makes the recent-click window independent of input order.
    order = np.lexsort((values, timestamps))
    return timestamps[order], values[order]


@dataclasses.dataclass(frozen=True)
class UserTimeline:
    """A user's point-in-time aggregates at each distinct timestamp of its own events."""

    timestamps: np.ndarray
    views: np.ndarray
    recent_click_rates: np.ndarray

    @classmethod
    def from_events(cls, events: Iterable[tuple[int, int]] | np.ndarray, recent_window: int) -> UserTimeline:
        """From (timestamp, click) events in any order (pairs, or an (n, 2) array)."""
        timestamps, clicks = _sorted_arrays(events)
        distinct, first_index = np.unique(timestamps, return_index=True)
        clicks_before = np.concatenate([[0], np.cumsum(clicks)])
        window_start = np.maximum(first_index - recent_window, 0)
        window_size = first_index - window_start
        window_clicks = clicks_before[first_index] - clicks_before[window_start]
        rates = np.divide(window_clicks, window_size, out=np.zeros(len(distinct)), where=window_size > 0)
        return cls(distinct, clicks_before[first_index], rates)

    def at(self, timestamp: int) -> tuple[int, float]:
        """(view count, recent click rate) just before `timestamp`, one of the user's event times."""
        index = int(np.searchsorted(self.timestamps, timestamp))
        if index == len(self.timestamps) or self.timestamps[index] != timestamp:
            raise KeyError(f"{timestamp} is not an event time of this user")
        return int(self.views[index]), float(self.recent_click_rates[index])

    def to_bytes(self) -> tuple[bytes, bytes, bytes]:
        return self.timestamps.tobytes(), self.views.tobytes(), self.recent_click_rates.tobytes()

    @classmethod
    def from_bytes(cls, packed: tuple[bytes, bytes, bytes]) -> UserTimeline:
        timestamps, views, rates = packed
        return cls(np.frombuffer(timestamps, np.int64), np.frombuffer(views, np.int64), np.frombuffer(rates))


@dataclasses.dataclass(frozen=True)
class ItemTimeline:
    """All impression times of an item, sorted."""

    timestamps: np.ndarray

    @classmethod
    def from_timestamps(cls, timestamps: Iterable[int]) -> ItemTimeline:
        return cls(np.sort(np.fromiter(timestamps, dtype=np.int64)))

    def exposures_before(self, timestamp: int) -> int:
        return int(np.searchsorted(self.timestamps, timestamp, side="left"))

    def to_bytes(self) -> bytes:
        return self.timestamps.tobytes()

    @classmethod
    def from_bytes(cls, packed: bytes) -> ItemTimeline:
        return cls(np.frombuffer(packed, np.int64))


def bucketize(value: float, boundaries: tuple[int, ...]) -> int:
    return int(np.searchsorted(np.asarray(boundaries), value, side="right"))


def user_cohort(is_new: bool, view_count: int, thresholds: CohortThresholds) -> str:
    if is_new:
        return features.USER_COHORTS[0]
    if view_count < thresholds.light_user_max_views:
        return features.USER_COHORTS[1]
    return features.USER_COHORTS[2]


def derived_features(
    timestamp: int,
    user_first_seen_ts: int,
    item_upload_ts: int,
    view_count: int,
    recent_click_rate: float,
    exposure_count: int,
    config: FeatureGenConfig,
) -> dict[str, int | float | bytes]:
    """All FeatureGen outputs of one impression, from its point-in-time aggregates."""
    thresholds = config.thresholds
    hours_since_first_seen = (timestamp - user_first_seen_ts) / SECONDS_PER_HOUR
    is_new_user = hours_since_first_seen < thresholds.new_user_hours
    item_age_days = (timestamp - item_upload_ts) / SECONDS_PER_DAY
    is_new_item = (
        item_age_days < thresholds.new_item_days and exposure_count < thresholds.new_item_max_exposures
    )
    return {
        features.USER_VIEW_COUNT: view_count,
        features.USER_VIEW_COUNT_BUCKET: bucketize(view_count, config.view_count_boundaries),
        features.USER_HOURS_SINCE_FIRST_SEEN: hours_since_first_seen,
        features.USER_IS_NEW: int(is_new_user),
        features.USER_COHORT: user_cohort(is_new_user, view_count, thresholds).encode(),
        features.USER_RECENT_CLICK_RATE: recent_click_rate,
        features.ITEM_AGE_DAYS: item_age_days,
        features.ITEM_EXPOSURE_COUNT: exposure_count,
        features.ITEM_IS_NEW: int(is_new_item),
        features.HOUR_OF_DAY: (timestamp // SECONDS_PER_HOUR) % 24,
    }
