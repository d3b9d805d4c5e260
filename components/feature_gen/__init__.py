"""FeatureGen: point-in-time user, item and context features on Beam."""

from watchnext.components.feature_gen.component import FeatureGen
from watchnext.components.feature_gen.point_in_time import FeatureGenConfig

__all__ = ["FeatureGen", "FeatureGenConfig"]
