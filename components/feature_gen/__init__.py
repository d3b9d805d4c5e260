"""FeatureGen: point-in-time user, item and context features on Beam.

The component is imported lazily: Beam workers import this package for the
transforms and must not pay for importing TFX and TensorFlow.
"""

from watchnext.components.feature_gen.point_in_time import FeatureGenConfig

__all__ = ["FeatureGen", "FeatureGenConfig"]


def __getattr__(name: str):
    if name == "FeatureGen":
        from watchnext.components.feature_gen.component import FeatureGen

        return FeatureGen
    raise AttributeError(name)
