"""watchnext: a TFX + Keras 3 recommender pipeline (see README.md)."""

__version__ = "0.1.0"
