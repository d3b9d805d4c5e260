"""Configuration of the multitask ranker: the one place its defaults live.

Example:
    config = RankerConfig(position_mode="bias_tower", deep="poso_mmoe")
    RankerConfig.from_dict(config.to_dict()) == config   # True
"""

from __future__ import annotations

import dataclasses
from typing import Any

# Position handling, for the ranking-quality comparison (methods.md section 1).
POSITION_BIAS_TOWER = "bias_tower"  # shallow tower on (position, device), added to the click logit
POSITION_FEATURE = "feature"  # position as an ordinary deep input (scored at `serving_position`)
POSITION_NONE = "none"  # position not used at all
POSITION_MODES = (POSITION_BIAS_TOWER, POSITION_FEATURE, POSITION_NONE)

# The deep part.
DEEP_MMOE = "mmoe"
DEEP_POSO_MMOE = "poso_mmoe"
DEEP_SHARED_BOTTOM = "shared_bottom"
DEEP_KINDS = (DEEP_MMOE, DEEP_POSO_MMOE, DEEP_SHARED_BOTTOM)

# Tasks, in head order: engagement (click, watch time), satisfaction (like, rating).
TASK_CLICK = "click"
TASK_WATCH_TIME = "watch_time"
TASK_LIKE = "like"
TASK_RATING = "rating"
TASKS = (TASK_CLICK, TASK_WATCH_TIME, TASK_LIKE, TASK_RATING)
BINARY_TASKS = (TASK_CLICK, TASK_LIKE)
ENGAGEMENT_LOGIT_TASKS = (TASK_CLICK,)  # the bias logit is added to these


@dataclasses.dataclass(frozen=True)
class RankerConfig:
    """Knobs of `MultitaskRanker` and its training.

    The final ranking score is `sum_t score_weights[t] * prediction_t`, with
    the click and like probabilities, the predicted log1p watch time and the
    predicted rating (0 when no rating is expected).
    """

    position_mode: str = POSITION_BIAS_TOWER
    deep: str = DEEP_MMOE
    embedding_dim: int = 16
    small_embedding_dim: int = 4
    bottom_units: int = 128
    num_experts: int = 4
    expert_units: tuple[int, ...] = (64,)
    tower_units: int = 32
    gate_dropout: float = 0.1
    position_dropout: float = 0.1
    # bias_tower mode, inference: add the tower's logit at position = missing (the YouTube
    # paper's serving rule; a per-device constant, so a request's ranking is unchanged) or
    # leave the tower out entirely (False).
    bias_tower_at_serving: bool = True
    serving_position: int = 1  # position_mode="feature" only: what it scores at
    wide_bins: int = 50_000
    poso_scale: float = 2.0
    # A new user's id is looked up as out-of-vocabulary, in training too: at serving a new user
    # is almost never in the vocabulary, so one learned "new user" row replaces both an
    # untrained OOV row (serving) and a row fit to a handful of impressions (training).
    new_user_id_as_oov: bool = True
    poso_bottom: bool = False  # deep="poso_mmoe": the shared bottom layer is a PosoDense too
    loss_weights: tuple[tuple[str, float], ...] = (
        (TASK_CLICK, 1.0),
        (TASK_WATCH_TIME, 0.2),
        (TASK_LIKE, 1.0),
        (TASK_RATING, 0.2),
    )
    score_weights: tuple[tuple[str, float], ...] = (
        (TASK_CLICK, 1.0),
        (TASK_WATCH_TIME, 0.1),
        (TASK_LIKE, 0.5),
        (TASK_RATING, 0.0),
    )
    learning_rate: float = 2e-3
    batch_size: int = 512
    seed: int = 1

    def __post_init__(self) -> None:
        if self.position_mode not in POSITION_MODES:
            raise ValueError(f"position_mode must be one of {POSITION_MODES}, got {self.position_mode!r}")
        if self.deep not in DEEP_KINDS:
            raise ValueError(f"deep must be one of {DEEP_KINDS}, got {self.deep!r}")
        for field in ("loss_weights", "score_weights"):
            unknown = set(dict(getattr(self, field))) - set(TASKS)
            if unknown:
                raise ValueError(f"{field} names unknown tasks {sorted(unknown)}; tasks are {TASKS}")

    def loss_weight(self, task: str) -> float:
        return float(dict(self.loss_weights).get(task, 0.0))

    def score_weight(self, task: str) -> float:
        return float(dict(self.score_weights).get(task, 0.0))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RankerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown ranker config keys {sorted(unknown)}; known: {sorted(known)}")
        values = dict(raw)
        for key in ("expert_units",):
            if key in values:
                values[key] = tuple(values[key])
        for key in ("loss_weights", "score_weights"):
            if key in values:
                items = values[key].items() if isinstance(values[key], dict) else values[key]
                values[key] = tuple((str(k), float(v)) for k, v in items)
        return cls(**values)
