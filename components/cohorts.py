"""Cold-start and cohort thresholds: the one place their defaults live.

POSO (Kuaishou) defines a new user as one whose first launch is within T_du
hours, and a new item as one uploaded within T_dv days with fewer than T_s
exposures. The synthetic generator draws its ground truth with these values
and FeatureGen computes its flags with them, so the two agree by construction.
"""

from __future__ import annotations

import dataclasses

NEW_USER_HOURS = 24  # T_du
NEW_ITEM_DAYS = 2  # T_dv
NEW_ITEM_MAX_EXPOSURES = 100  # T_s
LIGHT_USER_MAX_VIEWS = 20  # a user who is not new and has viewed fewer items is "light"


@dataclasses.dataclass(frozen=True)
class CohortThresholds:
    new_user_hours: float = NEW_USER_HOURS
    new_item_days: float = NEW_ITEM_DAYS
    new_item_max_exposures: int = NEW_ITEM_MAX_EXPOSURES
    light_user_max_views: int = LIGHT_USER_MAX_VIEWS
