"""HSTU generative recommender: sequential encoder (HSTU / SASRec blocks) and M-FALCON scoring."""

from watchnext.models.hstu.encoder import (
    CONFIGS,
    HSTU_CONFIG,
    HSTU_LARGE_CONFIG,
    SASREC_CONFIG,
    EncoderConfig,
    SequentialEncoder,
)
from watchnext.models.hstu.mfalcon import MFalconScorer, NaiveScorer, mfalcon_scores, naive_scores

__all__ = [
    "CONFIGS",
    "HSTU_CONFIG",
    "HSTU_LARGE_CONFIG",
    "SASREC_CONFIG",
    "EncoderConfig",
    "MFalconScorer",
    "NaiveScorer",
    "SequentialEncoder",
    "mfalcon_scores",
    "naive_scores",
]
