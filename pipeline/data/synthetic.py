"""Deterministic synthetic short-video interaction logs with known ground truth.

The generator simulates a short-video app: feed requests, a production ranker
that orders a slate of videos, users who examine the slots with a position- and
device-dependent propensity, and click, watch, like and rate what they examine
and find relevant. The output follows the raw-log schema
(`schemas/raw_log/schema.pbtxt`), and every quantity a benchmark needs to score
a model against the truth (examination propensities, relevance probabilities,
cohorts) is saved next to it.

Generating process. Notation: `sigmoid(x) = 1 / (1 + exp(-x))`; every `eps`
is an independent standard normal draw; Greek letters and `c_*` are fields of
`SyntheticConfig` (named in brackets).

World (users and items, drawn once):

    p_u, q_v, z_v, y_v ~ N(0, I_d / sqrt(d))                  d = [latent_dim]
    qw_v = rho_w q_v + sqrt(1 - rho_w^2) z_v       watch direction [watch_direction_correlation]
    ql_v = rho_l q_v + sqrt(1 - rho_l^2) y_v       like direction  [like_direction_correlation]
    b_v ~ N(0, sigma_b^2)                          item popularity [item_popularity_std]
    D_v = clip(round(D_med exp(sigma_D eps)), D_min, D_max)   duration in seconds
    genres_v = G[argmax_g q_v . h_g] (+ a second random genre w.p. 0.35), h_g ~ N(0, I_d)
    upload_v ~ t0 - U[0, catalog_max_age_days)   or, for a [new_item_share] of
               items, U[t0, t0 + span)             (fresh uploads during the logs)

Requests (sorted by time; all impressions of a request share its timestamp):

    regular: t_r ~ U[t0, t0 + span), u ~ Categorical(a_u), a_u ~ LogNormal(0, 1),
             first_seen_u = t0 - T_du - U[0, 730 days)
    new-user requests ([new_user_request_share] of requests), spread over
             ceil(n / [new_user_mean_requests]) newcomers:
             first_seen_u ~ U[t0, t0 + span - T_du), t_r = first_seen_u + U[0, T_du)
             (a newcomer appears only in its first T_du hours: all its rows are new-user rows)
    device_r = the user's primary device, or w.p. [device_switch_prob] a fresh
               draw; both from [device_shares]
    surface_r ~ Categorical([surface_shares]); randomized_r ~ Bernoulli([randomized_request_share])

Slate (K = [slate_size]):

    candidates: [candidates_per_request] draws from the items uploaded by t_r,
                P(v) ∝ exp(kappa b_v) [retrieval_popularity_power], duplicates dropped
    r_uv = alpha m_u p_u . q_v + pi_u b_v + c_0 + o_surface + beta_new n_u
           + beta_nshort n_u [D_v <= D_short]                        relevance logit
           m_u = [new_user_affinity_factor] if n_u else 1, pi_u = [new_user_popularity_factor] if n_u else 1
    s_uv = r_uv + sigma_rank eps + sigma_fresh fresh_v eps' + delta_fresh fresh_v   ranker estimate
    positions 1..K = the top-K candidates by s_uv, best first; a randomized
    request shows the same K items in a uniformly random order.

Outcomes of an impression of v at position k on device dev:

    e = min(1, a_dev / k^eta_dev)          examination [examination_base, examination_decay]
    examined ~ Bernoulli(e), relevant ~ Bernoulli(sigmoid(r_uv)), click = examined * relevant
    phi = sigmoid(alpha_w p_u . qw_v - lambda ln(D_v / D_ref) + c_w
                  + beta_short n_u [D_v <= D_short] + sigma_w eps)        watch fraction
    watch_time_s = click * ceil(10 D_v phi) / 10                          0 < watch <= D_v
    l = alpha_l p_u . ql_v + c_l + beta_like n_u + gamma (phi - 1/2)      like logit
    like = click * Bernoulli(sigmoid(l))
    rating = clip(round(3 + l - c_l + sigma_rt eps), 1, 5) if click and the user
             is a rater ([rater_user_share]) and Bernoulli([rating_prob_for_raters]),
             else missing

So click favours relevance (and is confounded with position outside the
randomized slice), watch time favours long videos and another latent direction,
like favours a third direction and completion: the tasks partly conflict.

Cohorts (as in POSO):

    n_u (new user)  = t_r - first_seen_u < T_du hours                 [new_user_hours]
    new item        = t_r - upload_v < T_dv days                      [new_item_days]
                      and exposures of v before this row < T_s        [new_item_max_exposures]
    fresh_v         = t_r - upload_v < T_dv days (what the ranker sees as fresh)

New users view less (beta_new < 0), finish short videos more (beta_short > 0)
and like more (beta_like > 0), as in Fig. 1 of the POSO paper; with
new_user_affinity_factor < 1 and new_user_popularity_factor > 1 they also follow
their own taste less and what is broadly liked more (the paper: new users "seem
interested in a broad range of videos"). Both factors are 1 by default.

Files written to `out_dir`:

- `logs.csv`: the raw log, header `features.RAW_LOG_COLUMNS`, one row per
  impression, formatted exactly as `raw_log_csv.RawLogCsvWriter` would;
  user_gender, user_age, user_occupation and item_year are missing (empty).
- `truth.csv`: one row per `logs.csv` row, same order (`TRUTH_COLUMNS`):
  the probabilities and cohort flags behind it.
- `ground_truth.json`: the config, the examination propensity per
  (device, position), the cohort definitions and summary statistics.

Same config (seed included) and same numpy version => byte-identical files.
Requests are simulated in chunks of `chunk_requests` (vectorized numpy, bounded
memory): about 4 s per million rows on one CPU core.

Example:

```python
from watchnext.pipeline.data import synthetic

config = synthetic.SyntheticConfig(seed=7)         # 6,000 requests x 10 slots
logs = synthetic.generate(config, "/tmp/synth")
logs.num_rows                                      # 60000
logs.logs_path                                     # PosixPath('/tmp/synth/logs.csv')
synthetic.examination_propensity(config)[0, :3]    # android, positions 1-3
# array([0.95, 0.5456..., 0.3944...])
```
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from watchnext.components import cohorts
from watchnext.models import features
from watchnext.pipeline.data.raw_log_csv import format_value

LOGS_FILE = "logs.csv"
TRUTH_FILE = "truth.csv"
GROUND_TRUTH_FILE = "ground_truth.json"

GENRES = (
    "comedy",
    "music",
    "dance",
    "food",
    "gaming",
    "sports",
    "pets",
    "beauty",
    "travel",
    "education",
)
# Columns of truth.csv, one row per logs.csv row: the row's keys, then its cohorts
# (is_new_user, is_new_item, item_prior_exposures: exposures of the item in earlier
# rows), then the true probabilities behind its labels (4 decimals): examine_prob e,
# relevance_prob sigmoid(r_uv), click_prob e * sigmoid(r_uv), the Bernoulli draws
# examined and relevant, watch_fraction phi and like_prob sigmoid(l) (both also for
# rows that were not clicked: what would have happened on a click).
TRUTH_COLUMNS = (
    features.REQUEST_ID,
    features.USER_ID,
    features.ITEM_ID,
    features.POSITION,
    features.DEVICE,
    features.POSITION_RANDOMIZED,
    "is_new_user",
    "is_new_item",
    "item_prior_exposures",
    "examine_prob",
    "relevance_prob",
    "click_prob",
    "examined",
    "relevant",
    "watch_fraction",
    "like_prob",
)

_HOUR_S = 3600
_DAY_S = 86400
_PROB_DECIMALS = 4
_SECOND_GENRE_PROB = 0.35
_MAX_RESAMPLE_ROUNDS = 100
_RATING_LEVELS = 5
_WORLD_STREAM, _SCHEDULE_STREAM, _CHUNK_STREAM = 0, 1, 2


def _per_device(*values: float) -> dict[str, float]:
    return dict(zip(features.DEVICES, values, strict=True))


def _per_surface(*values: float) -> dict[str, float]:
    return dict(zip(features.SURFACES, values, strict=True))


@dataclass
class SyntheticConfig:
    """Sizes and parameters of the generating process (see the module docstring).

    The defaults give 60,000 impressions (6,000 requests x 10 slots) over 14 days,
    a few seconds to generate. Same config (seed included) => byte-identical files.

    Sizes:
        seed: seeds every random draw.
        num_requests: feed requests; rows = num_requests * slate_size.
        slate_size: K, items shown per request (positions 1..K).
        num_users: established users (newcomers are added, see new_user_*).
        num_items: videos, fresh uploads included.
        start_ts: t0, Unix seconds of the first possible event (2024-01-01 UTC).
        span_days: length of the log.
        chunk_requests: requests simulated at once (bounds memory; part of the
            random stream, so changing it changes the output).
        candidates_per_request: retrieval draws per request, >= slate_size.
        latent_dim: d, size of the latent user/item factors.
    Traffic:
        randomized_request_share: requests whose slate is shown in random order.
        device_shares, surface_shares: traffic mix (synthetic logs have no
            'catalog' surface: that one is MovieLens').
        device_switch_prob: chance a request is not on the user's primary device.
    Examination, e = min(1, examination_base[dev] / position ** examination_decay[dev]).
    Relevance: affinity_scale (alpha), relevance_intercept (c_0), item_popularity_std
        (sigma_b), surface_relevance_offset (o_surface), retrieval_popularity_power
        (kappa), ranker_noise_std (sigma_rank), fresh_item_ranker_noise_std (sigma_fresh),
        fresh_item_ranker_boost (delta_fresh: the production ranker promotes fresh
        uploads, a selection bias that relevance does not explain; 0 by default).
    Watch time: watch_direction_correlation (rho_w), watch_affinity_scale (alpha_w),
        watch_intercept (c_w), watch_length_penalty (lambda), reference_duration_s
        (D_ref), watch_noise_std (sigma_w); durations: duration_median_s (D_med),
        duration_log_std (sigma_D), min_duration_s, max_duration_s.
    Like and rating: like_direction_correlation (rho_l), like_affinity_scale (alpha_l),
        like_intercept (c_l), like_completion_weight (gamma), rater_user_share,
        rating_prob_for_raters, rating_noise_std (sigma_rt).
    Cold start: new_user_request_share, new_user_mean_requests, new_user_hours (T_du),
        new_user_relevance_offset (beta_new), new_user_short_item_relevance_bonus
        (beta_nshort: new users prefer short videos; 0 by default),
        new_user_affinity_factor (m_u: scales new users' personal affinity term),
        new_user_popularity_factor (pi_u: scales the item popularity term for them),
        new_user_short_item_completion_bonus (beta_short), short_item_max_duration_s
        (D_short), new_user_like_offset
        (beta_like), new_item_share, new_item_days (T_dv), new_item_max_exposures
        (T_s), catalog_max_age_days.
    """

    seed: int = 0
    num_requests: int = 6_000
    slate_size: int = 10
    num_users: int = 2_000
    num_items: int = 1_000
    start_ts: int = 1_704_067_200
    span_days: int = 14
    chunk_requests: int = 20_000
    candidates_per_request: int = 30
    latent_dim: int = 8

    randomized_request_share: float = 0.1
    device_shares: dict[str, float] = field(default_factory=lambda: _per_device(0.5, 0.3, 0.15, 0.05))
    device_switch_prob: float = 0.1
    surface_shares: dict[str, float] = field(default_factory=lambda: _per_surface(0.7, 0.15, 0.15, 0.0))

    examination_base: dict[str, float] = field(default_factory=lambda: _per_device(0.95, 1.0, 0.85, 0.9))
    examination_decay: dict[str, float] = field(default_factory=lambda: _per_device(0.8, 0.6, 1.1, 0.35))

    affinity_scale: float = 1.5
    relevance_intercept: float = -2.0
    item_popularity_std: float = 0.5
    surface_relevance_offset: dict[str, float] = field(
        default_factory=lambda: _per_surface(0.0, 0.6, 0.3, 0.0)
    )
    retrieval_popularity_power: float = 2.0
    ranker_noise_std: float = 1.0
    fresh_item_ranker_noise_std: float = 1.0
    fresh_item_ranker_boost: float = 0.0

    watch_direction_correlation: float = 0.5
    watch_affinity_scale: float = 1.0
    watch_intercept: float = 0.5
    watch_length_penalty: float = 0.5
    reference_duration_s: float = 30.0
    watch_noise_std: float = 0.5
    duration_median_s: float = 25.0
    duration_log_std: float = 0.9
    min_duration_s: int = 5
    max_duration_s: int = 300

    like_direction_correlation: float = 0.3
    like_affinity_scale: float = 1.5
    like_intercept: float = -2.5
    like_completion_weight: float = 2.0
    rater_user_share: float = 0.3
    rating_prob_for_raters: float = 0.5
    rating_noise_std: float = 0.7

    new_user_request_share: float = 0.03
    new_user_mean_requests: float = 3.0
    new_user_hours: int = cohorts.NEW_USER_HOURS
    new_user_relevance_offset: float = -0.5
    new_user_short_item_relevance_bonus: float = 0.0
    new_user_affinity_factor: float = 1.0
    new_user_popularity_factor: float = 1.0
    new_user_short_item_completion_bonus: float = 1.0
    short_item_max_duration_s: float = 30.0
    new_user_like_offset: float = 1.0
    new_item_share: float = 0.1
    new_item_days: int = cohorts.NEW_ITEM_DAYS
    new_item_max_exposures: int = cohorts.NEW_ITEM_MAX_EXPOSURES
    catalog_max_age_days: int = 180

    @property
    def num_rows(self) -> int:
        return self.num_requests * self.slate_size

    @property
    def end_ts(self) -> int:
        return self.start_ts + self.span_days * _DAY_S

    def validate(self) -> None:
        """Raises ValueError when the sizes or shares cannot produce a valid log."""
        checks = {
            "num_requests, slate_size, num_users, chunk_requests must be >= 1": min(
                self.num_requests, self.slate_size, self.num_users, self.chunk_requests
            )
            >= 1,
            "candidates_per_request must be >= slate_size": self.candidates_per_request >= self.slate_size,
            "need at least 2 * slate_size catalog items (num_items * (1 - new_item_share))": (
                _catalog_item_count(self) >= 2 * self.slate_size
            ),
            "new_user_hours must be shorter than span_days": self.new_user_hours * _HOUR_S
            < self.span_days * _DAY_S,
            "new_user_request_share must be in [0, 0.05)": 0 <= self.new_user_request_share < 0.05,
            "new_user_mean_requests must be >= 1": self.new_user_mean_requests >= 1,
            "min_duration_s must be in [1, max_duration_s]": 1 <= self.min_duration_s <= self.max_duration_s,
            "device_shares/examination_* keys must be features.DEVICES": all(
                set(table) == set(features.DEVICES)
                for table in (self.device_shares, self.examination_base, self.examination_decay)
            ),
            "surface_* keys must be features.SURFACES": all(
                set(table) == set(features.SURFACES)
                for table in (self.surface_shares, self.surface_relevance_offset)
            ),
        }
        failed = [message for message, ok in checks.items() if not ok]
        if failed:
            raise ValueError("invalid SyntheticConfig: " + "; ".join(failed))


@dataclass(frozen=True)
class GeneratedLogs:
    """Where `generate` wrote its files, and how much it wrote."""

    out_dir: Path
    logs_path: Path
    truth_path: Path
    ground_truth_path: Path
    num_rows: int
    num_requests: int
    num_randomized_requests: int
    num_new_user_rows: int


def examination_propensity(config: SyntheticConfig) -> np.ndarray:
    """The true p(examine | position, device): shape (len(DEVICES), slate_size)."""
    positions = np.arange(1, config.slate_size + 1, dtype=np.float64)
    base = np.array([config.examination_base[device] for device in features.DEVICES])
    decay = np.array([config.examination_decay[device] for device in features.DEVICES])
    return np.minimum(1.0, base[:, None] / positions[None, :] ** decay[:, None])


def generate(config: SyntheticConfig, out_dir: str | os.PathLike) -> GeneratedLogs:
    """Writes logs.csv, truth.csv and ground_truth.json for `config` into `out_dir`."""
    config.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    world = _make_world(config, _rng(config.seed, _WORLD_STREAM))
    requests = _make_requests(config, world, _rng(config.seed, _SCHEDULE_STREAM))
    summary = _Summary(config, num_users=len(world.user_factors))
    with (
        open(out / LOGS_FILE, "w", encoding="utf-8", newline="") as logs_file,
        open(out / TRUTH_FILE, "w", encoding="utf-8", newline="") as truth_file,
    ):
        _write_logs_and_truth(config, world, requests, summary, logs_file, truth_file)
    ground_truth = _ground_truth(config, summary)
    ground_truth_text = json.dumps(ground_truth, indent=2) + "\n"
    (out / GROUND_TRUTH_FILE).write_text(ground_truth_text, encoding="utf-8")
    return GeneratedLogs(
        out_dir=out,
        logs_path=out / LOGS_FILE,
        truth_path=out / TRUTH_FILE,
        ground_truth_path=out / GROUND_TRUTH_FILE,
        num_rows=summary.rows,
        num_requests=config.num_requests,
        num_randomized_requests=summary.randomized_requests,
        num_new_user_rows=summary.new_user_rows,
    )


# ----------------------------------------------------------------------------- world


@dataclass
class _World:
    user_factors: np.ndarray
    user_first_seen_ts: np.ndarray
    user_primary_device: np.ndarray
    user_is_rater: np.ndarray
    user_activity: np.ndarray  # sampling weights; 0 for newcomers
    item_factors: np.ndarray
    item_watch_factors: np.ndarray
    item_like_factors: np.ndarray
    item_popularity: np.ndarray
    item_upload_ts: np.ndarray
    item_duration_s: np.ndarray
    item_genres: list[tuple[str, ...]]
    items_by_upload: np.ndarray  # item indices sorted by upload time
    retrieval_cumweight: np.ndarray  # cumulative retrieval weight, in items_by_upload order


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def _catalog_item_count(config: SyntheticConfig) -> int:
    return config.num_items - round(config.num_items * config.new_item_share)


def _new_user_request_count(config: SyntheticConfig) -> int:
    return round(config.num_requests * config.new_user_request_share)


def _newcomer_count(config: SyntheticConfig) -> int:
    return math.ceil(_new_user_request_count(config) / config.new_user_mean_requests)


def _latent(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    return rng.normal(scale=dim**-0.25, size=(count, dim))


def _correlated(rng: np.random.Generator, base: np.ndarray, correlation: float) -> np.ndarray:
    own = _latent(rng, base.shape[0], base.shape[1])
    return correlation * base + math.sqrt(1.0 - correlation**2) * own


def _shares(table: dict[str, float], names: tuple[str, ...]) -> np.ndarray:
    weights = np.array([table[name] for name in names], dtype=np.float64)
    return weights / weights.sum()


def _make_world(config: SyntheticConfig, rng: np.random.Generator) -> _World:
    users = _make_users(config, rng)
    items = _make_items(config, rng)
    return _World(**users, **items)


def _make_users(config: SyntheticConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    established, newcomers = config.num_users, _newcomer_count(config)
    total = established + newcomers
    new_user_s = config.new_user_hours * _HOUR_S
    established_seen = config.start_ts - new_user_s - rng.integers(0, 730 * _DAY_S, established)
    newcomer_seen = rng.integers(config.start_ts, config.end_ts - new_user_s, newcomers)
    activity = np.concatenate([rng.lognormal(0.0, 1.0, established), np.zeros(newcomers)])
    return {
        "user_factors": _latent(rng, total, config.latent_dim),
        "user_first_seen_ts": np.concatenate([established_seen, newcomer_seen]).astype(np.int64),
        "user_primary_device": rng.choice(
            len(features.DEVICES), total, p=_shares(config.device_shares, features.DEVICES)
        ),
        "user_is_rater": rng.random(total) < config.rater_user_share,
        "user_activity": activity,
    }


def _make_items(config: SyntheticConfig, rng: np.random.Generator) -> dict[str, Any]:
    count, dim = config.num_items, config.latent_dim
    factors = _latent(rng, count, dim)
    popularity = rng.normal(0.0, config.item_popularity_std, count)
    upload_ts = _item_upload_ts(config, rng)
    items_by_upload = np.argsort(upload_ts, kind="stable")
    retrieval_weight = np.exp(config.retrieval_popularity_power * popularity)
    return {
        "item_factors": factors,
        "item_watch_factors": _correlated(rng, factors, config.watch_direction_correlation),
        "item_like_factors": _correlated(rng, factors, config.like_direction_correlation),
        "item_popularity": popularity,
        "item_upload_ts": upload_ts,
        "item_duration_s": _item_durations(config, rng),
        "item_genres": _item_genres(rng, factors),
        "items_by_upload": items_by_upload,
        "retrieval_cumweight": np.cumsum(retrieval_weight[items_by_upload]),
    }


def _item_upload_ts(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    catalog = _catalog_item_count(config)
    fresh = config.num_items - catalog
    catalog_ts = config.start_ts - rng.integers(1, config.catalog_max_age_days * _DAY_S, catalog)
    fresh_ts = rng.integers(config.start_ts, config.end_ts, fresh)
    upload_ts = np.concatenate([catalog_ts, fresh_ts]).astype(np.int64)
    return upload_ts[rng.permutation(config.num_items)]


def _item_durations(config: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    log_noise = config.duration_log_std * rng.normal(size=config.num_items)
    raw = config.duration_median_s * np.exp(log_noise)
    return np.clip(np.rint(raw), config.min_duration_s, config.max_duration_s).astype(np.int64)


def _item_genres(rng: np.random.Generator, factors: np.ndarray) -> list[tuple[str, ...]]:
    directions = rng.normal(size=(factors.shape[1], len(GENRES)))
    primary = np.argmax(factors @ directions, axis=1)
    second = (primary + rng.integers(1, len(GENRES), len(primary))) % len(GENRES)
    has_second = rng.random(len(primary)) < _SECOND_GENRE_PROB
    return [
        (GENRES[p], GENRES[s]) if both else (GENRES[p],)
        for p, s, both in zip(primary.tolist(), second.tolist(), has_second.tolist(), strict=True)
    ]


# -------------------------------------------------------------------------- requests


@dataclass
class _Requests:
    timestamp: np.ndarray
    user: np.ndarray
    device: np.ndarray
    surface: np.ndarray
    randomized: np.ndarray


def _make_requests(config: SyntheticConfig, world: _World, rng: np.random.Generator) -> _Requests:
    timestamp, user = _request_times_and_users(config, world, rng)
    order = np.argsort(timestamp, kind="stable")
    timestamp, user = timestamp[order], user[order]
    count = config.num_requests
    switched = rng.random(count) < config.device_switch_prob
    device_shares = _shares(config.device_shares, features.DEVICES)
    random_device = rng.choice(len(features.DEVICES), count, p=device_shares)
    return _Requests(
        timestamp=timestamp,
        user=user,
        device=np.where(switched, random_device, world.user_primary_device[user]),
        surface=rng.choice(
            len(features.SURFACES), count, p=_shares(config.surface_shares, features.SURFACES)
        ),
        randomized=rng.random(count) < config.randomized_request_share,
    )


def _request_times_and_users(
    config: SyntheticConfig, world: _World, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    new_requests = _new_user_request_count(config)
    regular_requests = config.num_requests - new_requests
    activity = world.user_activity / world.user_activity.sum()
    regular_user = rng.choice(len(activity), regular_requests, p=activity)
    regular_ts = rng.integers(config.start_ts, config.end_ts, regular_requests)
    newcomer = config.num_users + rng.integers(0, max(_newcomer_count(config), 1), new_requests)
    new_ts = world.user_first_seen_ts[newcomer] + rng.integers(
        0, config.new_user_hours * _HOUR_S, new_requests
    )
    timestamp = np.concatenate([regular_ts, new_ts]).astype(np.int64)
    return timestamp, np.concatenate([regular_user, newcomer])


# ---------------------------------------------------------------------------- slates


def _sample_candidates(
    world: _World, timestamp: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Popularity-weighted draws (with replacement) among the items uploaded by each request."""
    upload_sorted = world.item_upload_ts[world.items_by_upload]
    available = np.searchsorted(upload_sorted, timestamp, side="right")
    total_weight = world.retrieval_cumweight[available - 1]
    targets = rng.random((len(timestamp), size)) * total_weight[:, None]
    slots = np.searchsorted(world.retrieval_cumweight, targets, side="right")
    slots = np.minimum(slots, (available - 1)[:, None])
    return np.sort(world.items_by_upload[slots], axis=1)


def _duplicates(sorted_candidates: np.ndarray) -> np.ndarray:
    duplicate = np.zeros(sorted_candidates.shape, dtype=bool)
    duplicate[:, 1:] = sorted_candidates[:, 1:] == sorted_candidates[:, :-1]
    return duplicate


def _draw_candidates(
    config: SyntheticConfig, world: _World, timestamp: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates per request (sorted) and a duplicate mask; >= slate_size distinct each."""
    size = config.candidates_per_request
    candidates = _sample_candidates(world, timestamp, size, rng)
    for _ in range(_MAX_RESAMPLE_ROUNDS):
        too_few = (size - _duplicates(candidates).sum(axis=1)) < config.slate_size
        if not too_few.any():
            return candidates, _duplicates(candidates)
        candidates[too_few] = _sample_candidates(world, timestamp[too_few], size, rng)
    raise RuntimeError("could not draw enough distinct candidates; raise num_items")


def _relevance_logit(
    config: SyntheticConfig,
    world: _World,
    user: np.ndarray,
    item: np.ndarray,
    surface: np.ndarray,
    new_user: np.ndarray,
) -> np.ndarray:
    """r_uv for `item` of shape (requests, n) shown to `user` of shape (requests,)."""
    affinity = np.einsum("rd,rnd->rn", world.user_factors[user], world.item_factors[item])
    offsets = _surface_offsets(config)[surface] + config.new_user_relevance_offset * new_user
    short = world.item_duration_s[item] <= config.short_item_max_duration_s
    affinity_scale = np.where(new_user, config.new_user_affinity_factor, 1.0) * config.affinity_scale
    popularity_scale = np.where(new_user, config.new_user_popularity_factor, 1.0)
    return (
        affinity_scale[:, None] * affinity
        + popularity_scale[:, None] * world.item_popularity[item]
        + config.relevance_intercept
        + offsets[:, None]
        + config.new_user_short_item_relevance_bonus * new_user[:, None] * short
    )


def _surface_offsets(config: SyntheticConfig) -> np.ndarray:
    return np.array([config.surface_relevance_offset[s] for s in features.SURFACES])


@dataclass
class _Slates:
    item: np.ndarray  # (requests, K), column k = position k + 1
    relevance_logit: np.ndarray


def _rank_slates(
    config: SyntheticConfig,
    world: _World,
    requests: _Requests,
    new_user: np.ndarray,
    rng: np.random.Generator,
) -> _Slates:
    candidates, duplicate = _draw_candidates(config, world, requests.timestamp, rng)
    logit = _relevance_logit(config, world, requests.user, candidates, requests.surface, new_user)
    fresh = requests.timestamp[:, None] - world.item_upload_ts[candidates] < config.new_item_days * _DAY_S
    noise = config.ranker_noise_std * rng.normal(
        size=logit.shape
    ) + config.fresh_item_ranker_noise_std * fresh * rng.normal(size=logit.shape)
    noise = noise + config.fresh_item_ranker_boost * fresh
    score = np.where(duplicate, -np.inf, logit + noise)
    top = np.argsort(-score, axis=1, kind="stable")[:, : config.slate_size]
    shuffled = np.argsort(rng.random(top.shape), axis=1)
    top = np.where(requests.randomized[:, None], np.take_along_axis(top, shuffled, axis=1), top)
    return _Slates(np.take_along_axis(candidates, top, axis=1), np.take_along_axis(logit, top, axis=1))


# -------------------------------------------------------------------------- outcomes


@dataclass
class _Rows:
    """One entry per impression of a chunk, request-major, position-minor."""

    request: np.ndarray  # global request index
    user: np.ndarray
    item: np.ndarray
    position: np.ndarray
    device: np.ndarray
    randomized: np.ndarray
    new_user: np.ndarray
    new_item: np.ndarray
    prior_exposures: np.ndarray
    examine_prob: np.ndarray
    relevance_prob: np.ndarray
    examined: np.ndarray
    relevant: np.ndarray
    click: np.ndarray
    watch_fraction: np.ndarray
    watch_tenths: np.ndarray
    like_prob: np.ndarray
    like: np.ndarray
    rating: np.ndarray  # 1..5, 0 = missing


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _slice_requests(requests: _Requests, start: int, stop: int) -> _Requests:
    return _Requests(
        **{
            name: getattr(requests, name)[start:stop]
            for name in ("timestamp", "user", "device", "surface", "randomized")
        }
    )


def _simulate_chunk(
    config: SyntheticConfig,
    world: _World,
    requests: _Requests,
    first_request: int,
    exposures: np.ndarray,
    rng: np.random.Generator,
) -> _Rows:
    """Slates and outcomes of `requests`; updates the running item `exposures` counts."""
    new_user_s = config.new_user_hours * _HOUR_S
    new_user = requests.timestamp - world.user_first_seen_ts[requests.user] < new_user_s
    slates = _rank_slates(config, world, requests, new_user, rng)
    k = config.slate_size

    def per_row(values: np.ndarray) -> np.ndarray:
        return np.repeat(values, k)

    item = slates.item.ravel()
    timestamp = per_row(requests.timestamp)
    prior = _prior_exposures(item, exposures)
    rows = {
        "request": per_row(np.arange(first_request, first_request + len(requests.timestamp))),
        "user": per_row(requests.user),
        "item": item,
        "position": np.tile(np.arange(1, k + 1), len(requests.timestamp)),
        "device": per_row(requests.device),
        "randomized": per_row(requests.randomized),
        "new_user": per_row(new_user),
        "new_item": (
            (timestamp - world.item_upload_ts[item] < config.new_item_days * _DAY_S)
            & (prior < config.new_item_max_exposures)
        ),
        "prior_exposures": prior,
        "relevance_prob": _sigmoid(slates.relevance_logit.ravel()),
    }
    rows["examine_prob"] = examination_propensity(config)[rows["device"], rows["position"] - 1]
    return _Rows(**rows, **_outcomes(config, world, rows, rng))


def _prior_exposures(item: np.ndarray, exposures: np.ndarray) -> np.ndarray:
    """Exposures of each row's item before the row; adds this chunk to `exposures`."""
    order = np.argsort(item, kind="stable")
    sorted_item = item[order]
    group_start = np.searchsorted(sorted_item, sorted_item, side="left")
    rank_in_chunk = np.empty_like(item)
    rank_in_chunk[order] = np.arange(len(item)) - group_start
    prior = exposures[item] + rank_in_chunk
    exposures += np.bincount(item, minlength=len(exposures))
    return prior


def _outcomes(
    config: SyntheticConfig, world: _World, rows: dict[str, np.ndarray], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    examined = rng.random(len(rows["item"])) < rows["examine_prob"]
    relevant = rng.random(len(rows["item"])) < rows["relevance_prob"]
    click = examined & relevant
    watch_fraction = _watch_fraction(config, world, rows, rng)
    duration_tenths = 10 * world.item_duration_s[rows["item"]]
    watch_tenths = np.clip(np.ceil(duration_tenths * watch_fraction), 1, duration_tenths)
    like_logit = _like_logit(config, world, rows, watch_fraction)
    like = click & (rng.random(len(click)) < _sigmoid(like_logit))
    return {
        "examined": examined,
        "relevant": relevant,
        "click": click,
        "watch_fraction": watch_fraction,
        "watch_tenths": np.where(click, watch_tenths, 0).astype(np.int64),
        "like_prob": _sigmoid(like_logit),
        "like": like,
        "rating": _ratings(config, world, rows, click, like_logit, rng),
    }


def _user_item_affinity(world: _World, rows: dict[str, np.ndarray], item_factors: np.ndarray):
    return np.einsum("nd,nd->n", world.user_factors[rows["user"]], item_factors[rows["item"]])


def _watch_fraction(
    config: SyntheticConfig, world: _World, rows: dict[str, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    duration = world.item_duration_s[rows["item"]]
    short = duration <= config.short_item_max_duration_s
    affinity = _user_item_affinity(world, rows, world.item_watch_factors)
    logit = (
        config.watch_affinity_scale * affinity
        - config.watch_length_penalty * np.log(duration / config.reference_duration_s)
        + config.watch_intercept
        + config.new_user_short_item_completion_bonus * (rows["new_user"] & short)
        + config.watch_noise_std * rng.normal(size=len(duration))
    )
    return _sigmoid(logit)


def _like_logit(
    config: SyntheticConfig, world: _World, rows: dict[str, np.ndarray], watch_fraction: np.ndarray
) -> np.ndarray:
    return (
        config.like_affinity_scale * _user_item_affinity(world, rows, world.item_like_factors)
        + config.like_intercept
        + config.new_user_like_offset * rows["new_user"]
        + config.like_completion_weight * (watch_fraction - 0.5)
    )


def _ratings(
    config: SyntheticConfig,
    world: _World,
    rows: dict[str, np.ndarray],
    click: np.ndarray,
    like_logit: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    noise = config.rating_noise_std * rng.normal(size=len(click))
    value = np.clip(np.rint(3.0 + like_logit - config.like_intercept + noise), 1, _RATING_LEVELS)
    rates = (
        click & world.user_is_rater[rows["user"]] & (rng.random(len(click)) < config.rating_prob_for_raters)
    )
    return np.where(rates, value, 0).astype(np.int64)


# --------------------------------------------------------------------------- writing


def _write_logs_and_truth(
    config: SyntheticConfig,
    world: _World,
    requests: _Requests,
    summary: _Summary,
    logs_file,
    truth_file,
) -> None:
    logs_file.write(",".join(features.RAW_LOG_COLUMNS) + "\n")
    truth_file.write(",".join(TRUTH_COLUMNS) + "\n")
    tables = _FormatTables(config, world)
    exposures = np.zeros(config.num_items, dtype=np.int64)
    for index, start in enumerate(range(0, config.num_requests, config.chunk_requests)):
        stop = min(start + config.chunk_requests, config.num_requests)
        chunk = _slice_requests(requests, start, stop)
        rows = _simulate_chunk(
            config, world, chunk, start, exposures, _rng(config.seed, _CHUNK_STREAM, index)
        )
        logs_file.write(tables.log_lines(rows, chunk))
        truth_file.write(tables.truth_lines(rows))
        summary.add(rows)


def _strings(values) -> np.ndarray:
    """An object array of `format_value` strings, for vectorized lookups."""
    return np.array([format_value(v) for v in values], dtype=object)


def _int_strings(values: np.ndarray) -> list[str]:
    # format_value(int) is str(int); calling str directly is several times faster.
    return [str(value) for value in values.tolist()]


def _join_rows(columns: list) -> str:
    """CSV text of rows given column-wise sequences of already formatted fields."""
    return "\n".join(map(",".join, zip(*columns, strict=True))) + "\n"


class _FormatTables:
    """Precomputed CSV text of every value, so rows are built by lookups, not per-value str()."""

    def __init__(self, config: SyntheticConfig, world: _World):
        self.user_id = _strings(f"u{u}" for u in range(len(world.user_factors)))
        self.user_first_seen = _strings(world.user_first_seen_ts.tolist())
        self.item_id = _strings(f"v{v}" for v in range(config.num_items))
        # The columns from item_upload_ts to item_year: upload, 3 missing user side
        # features, genres, duration, missing item_year.
        self.item_tail = np.array(
            [
                ",".join(
                    (
                        format_value(ts),
                        "",
                        "",
                        "",
                        format_value(genres),
                        format_value(float(duration)),
                        format_value(None),
                    )
                )
                for ts, genres, duration in zip(
                    world.item_upload_ts.tolist(),
                    world.item_genres,
                    world.item_duration_s.tolist(),
                    strict=True,
                )
            ],
            dtype=object,
        )
        self.position = _strings(range(config.slate_size + 1))
        self.device = _strings(features.DEVICES)
        self.surface = _strings(features.SURFACES)
        self.flag = _strings((0, 1))
        self.watch_time = _strings(tenths / 10 for tenths in range(10 * config.max_duration_s + 1))
        self.rating = _strings([None] + [float(r) for r in range(1, _RATING_LEVELS + 1)])
        scale = 10**_PROB_DECIMALS
        self.probability = np.array(
            [f"{i / scale:.{_PROB_DECIMALS}f}" for i in range(scale + 1)], dtype=object
        )
        # click, watch_time_s, like, rating of an impression that was not clicked.
        self.no_click_outcome = ",".join(
            (format_value(0), format_value(0.0), format_value(0), format_value(None))
        )

    def log_lines(self, rows: _Rows, requests: _Requests) -> str:
        local = rows.request - rows.request[0]
        columns = [
            self.user_id[rows.user],
            self.item_id[rows.item],
            _request_ids(rows.request),
            _int_strings(requests.timestamp[local]),
            self.position[rows.position],
            self.device[rows.device],
            self.surface[requests.surface[local]],
            self._flags(rows.randomized),
            self.user_first_seen[rows.user],
            self.item_tail[rows.item],
            self._outcomes(rows),
        ]
        return _join_rows(columns)

    def _outcomes(self, rows: _Rows) -> np.ndarray:
        outcome = np.full(len(rows.click), self.no_click_outcome, dtype=object)
        clicked = rows.click
        outcome[clicked] = (
            "1,"
            + self.watch_time[rows.watch_tenths[clicked]]
            + ","
            + self._flags(rows.like[clicked])
            + ","
            + self.rating[rows.rating[clicked]]
        )
        return outcome

    def truth_lines(self, rows: _Rows) -> str:
        columns = [
            _request_ids(rows.request),
            self.user_id[rows.user],
            self.item_id[rows.item],
            self.position[rows.position],
            self.device[rows.device],
            self._flags(rows.randomized),
            self._flags(rows.new_user),
            self._flags(rows.new_item),
            _int_strings(rows.prior_exposures),
            self._probability(rows.examine_prob),
            self._probability(rows.relevance_prob),
            self._probability(rows.examine_prob * rows.relevance_prob),
            self._flags(rows.examined),
            self._flags(rows.relevant),
            self._probability(rows.watch_fraction),
            self._probability(rows.like_prob),
        ]
        return _join_rows(columns)

    def _flags(self, values: np.ndarray) -> np.ndarray:
        return self.flag[values.astype(np.int64)]

    def _probability(self, values: np.ndarray) -> np.ndarray:
        return self.probability[np.rint(values * 10**_PROB_DECIMALS).astype(np.int64)]


def _request_ids(request: np.ndarray) -> list[str]:
    return [f"r{r}" for r in request.tolist()]


# ------------------------------------------------------------------------ ground truth


class _Summary:
    """Running counts over the chunks, for ground_truth.json."""

    def __init__(self, config: SyntheticConfig, num_users: int):
        shape = (len(features.DEVICES), config.slate_size)
        self.rows = self.clicks = self.likes = self.ratings = 0
        self.watch_time_tenths = 0
        self.requests = self.randomized_requests = 0
        self.new_user_rows = self.new_user_clicks = self.new_user_likes = 0
        self.new_item_rows = 0
        self.randomized_impressions = np.zeros(shape, dtype=np.int64)
        self.randomized_clicks = np.zeros(shape, dtype=np.int64)
        self.ranked_impressions = np.zeros(config.slate_size, dtype=np.int64)
        self.ranked_clicks = np.zeros(config.slate_size, dtype=np.int64)
        self.users_seen = np.zeros(num_users, dtype=bool)
        self.items_seen = np.zeros(config.num_items, dtype=bool)

    def add(self, rows: _Rows) -> None:
        self.rows += len(rows.click)
        self.clicks += int(rows.click.sum())
        self.likes += int(rows.like.sum())
        self.ratings += int((rows.rating > 0).sum())
        self.watch_time_tenths += int(rows.watch_tenths.sum())
        first_slot = rows.position == 1
        self.requests += int(first_slot.sum())
        self.randomized_requests += int((first_slot & rows.randomized).sum())
        self.new_user_rows += int(rows.new_user.sum())
        self.new_user_clicks += int((rows.new_user & rows.click).sum())
        self.new_user_likes += int((rows.new_user & rows.like).sum())
        self.new_item_rows += int(rows.new_item.sum())
        self._add_position_counts(rows)
        self.users_seen[rows.user] = True
        self.items_seen[rows.item] = True

    def _add_position_counts(self, rows: _Rows) -> None:
        slot = rows.position - 1
        randomized, ranked = rows.randomized, ~rows.randomized
        np.add.at(self.randomized_impressions, (rows.device[randomized], slot[randomized]), 1)
        np.add.at(
            self.randomized_clicks,
            (rows.device[randomized], slot[randomized]),
            rows.click[randomized].astype(np.int64),
        )
        self.ranked_impressions += np.bincount(slot[ranked], minlength=len(self.ranked_clicks))
        self.ranked_clicks += np.bincount(
            slot[ranked], weights=rows.click[ranked], minlength=len(self.ranked_clicks)
        ).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        regular_rows = self.rows - self.new_user_rows
        randomized_by_position = self.randomized_clicks.sum(0), self.randomized_impressions.sum(0)
        return {
            "num_rows": self.rows,
            "num_requests": self.requests,
            "num_randomized_requests": self.randomized_requests,
            "num_users_seen": int(self.users_seen.sum()),
            "num_items_seen": int(self.items_seen.sum()),
            "click_rate": _rate(self.clicks, self.rows),
            "like_rate": _rate(self.likes, self.rows),
            "like_rate_of_clicks": _rate(self.likes, self.clicks),
            "rating_share_of_clicks": _rate(self.ratings, self.clicks),
            "mean_watch_time_s_of_clicks": _rate(self.watch_time_tenths / 10, self.clicks),
            "new_user_row_share": _rate(self.new_user_rows, self.rows),
            "new_item_row_share": _rate(self.new_item_rows, self.rows),
            "new_user_click_rate": _rate(self.new_user_clicks, self.new_user_rows),
            "regular_user_click_rate": _rate(self.clicks - self.new_user_clicks, regular_rows),
            "new_user_like_rate_of_clicks": _rate(self.new_user_likes, self.new_user_clicks),
            "regular_user_like_rate_of_clicks": _rate(
                self.likes - self.new_user_likes, self.clicks - self.new_user_clicks
            ),
            "click_rate_by_position": {
                "randomized": _rates(*randomized_by_position),
                "ranked": _rates(self.ranked_clicks, self.ranked_impressions),
            },
            "randomized_click_rate_by_device_position": {
                device: _rates(self.randomized_clicks[d], self.randomized_impressions[d])
                for d, device in enumerate(features.DEVICES)
            },
        }


def _rate(numerator: float, denominator: float) -> float | None:
    return round(float(numerator) / denominator, 6) if denominator else None


def _rates(numerators: np.ndarray, denominators: np.ndarray) -> list[float | None]:
    return [_rate(n, d) for n, d in zip(numerators.tolist(), denominators.tolist(), strict=True)]


def _ground_truth(config: SyntheticConfig, summary: _Summary) -> dict[str, Any]:
    propensity = examination_propensity(config)
    return {
        "config": dataclasses.asdict(config),
        "examination_propensity": {
            "formula": "min(1, examination_base[device] / position ** examination_decay[device])",
            "positions": list(range(1, config.slate_size + 1)),
            "by_device": {
                device: propensity[d].round(6).tolist() for d, device in enumerate(features.DEVICES)
            },
        },
        "cohorts": _cohort_definitions(config),
        "files": {"logs": LOGS_FILE, "truth": TRUTH_FILE, "truth_columns": list(TRUTH_COLUMNS)},
        "summary": summary.to_dict(),
    }


def _cohort_definitions(config: SyntheticConfig) -> dict[str, Any]:
    return {
        "new_user": {
            "definition": "timestamp - user_first_seen_ts < new_user_hours * 3600",
            "new_user_hours": config.new_user_hours,
        },
        "new_item": {
            "definition": (
                "timestamp - item_upload_ts < new_item_days * 86400 and "
                "item_prior_exposures < new_item_max_exposures"
            ),
            "new_item_days": config.new_item_days,
            "new_item_max_exposures": config.new_item_max_exposures,
        },
        "short_item": {
            "definition": "item_duration_s <= short_item_max_duration_s",
            "short_item_max_duration_s": config.short_item_max_duration_s,
        },
    }
