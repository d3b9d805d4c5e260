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


def timestamp_counts(rows: np.ndarray) -> np.ndarray:
    """(t, impressions, clicks) rows, any order and repeats -> one row per distinct t, sorted by t.

    A user's events collapse to these counts: every feature of an impression at t depends only
    on the events before t, and ties are ordered by click (non-clicks first) where order matters.
    """
    rows = np.asarray(rows, np.int64).reshape(-1, 3)
    distinct, group = np.unique(rows[:, 0], return_inverse=True)
    counts = np.zeros((len(distinct), 3), np.int64)
    counts[:, 0] = distinct
    np.add.at(counts[:, 1], group, rows[:, 1])
    np.add.at(counts[:, 2], group, rows[:, 2])
    return counts


@dataclasses.dataclass(frozen=True)
class UserTimeline:
    """A user's point-in-time aggregates at each distinct timestamp of its own events."""

    timestamps: np.ndarray
    views: np.ndarray
    recent_click_rates: np.ndarray

    @classmethod
    def from_events(cls, events: Iterable[tuple[int, int]] | np.ndarray, recent_window: int) -> UserTimeline:
        """From (timestamp, click) events in any order (pairs, or an (n, 2) array)."""
        pairs = np.asarray(list(events) if not isinstance(events, np.ndarray) else events, np.int64)
        pairs = pairs.reshape(-1, 2)
        ones = np.ones((len(pairs), 1), np.int64)
        return cls.from_counts(timestamp_counts(np.hstack([pairs[:, :1], ones, pairs[:, 1:]])), recent_window)

    @classmethod
    def from_counts(cls, counts: np.ndarray, recent_window: int) -> UserTimeline:
        """From `timestamp_counts` rows (t, impressions, clicks), one per distinct t, sorted.

        The impressions are ordered by time, and within a timestamp non-clicks first (so the
        window does not depend on input order). Before the group at t_g there are S_g
        impressions with C_g clicks; the window is the impressions [max(S_g - W, 0), S_g), and
        the clicks among the first p impressions are C_h + max(0, p - S_h - (n_h - c_h)) for the
        group h holding position p.
        """
        timestamps, impressions, clicks = np.asarray(counts, np.int64).reshape(-1, 3).T
        starts = np.concatenate([[0], np.cumsum(impressions)])  # S_g; the last entry is the total
        clicks_before = np.concatenate([[0], np.cumsum(clicks)])  # C_g
        window_start = np.maximum(starts[:-1] - recent_window, 0)
        holder = np.searchsorted(starts[:-1], window_start, side="right") - 1
        skipped_non_clicks = np.minimum(window_start - starts[:-1][holder], (impressions - clicks)[holder])
        clicks_at_start = clicks_before[holder] + (window_start - starts[:-1][holder]) - skipped_non_clicks
        window_size = starts[:-1] - window_start
        window_clicks = clicks_before[:-1] - clicks_at_start
        rates = np.divide(window_clicks, window_size, out=np.zeros(len(timestamps)), where=window_size > 0)
        return cls(timestamps, clicks_before[:-1], rates)

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
