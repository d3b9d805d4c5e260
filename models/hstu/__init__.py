"""HSTU generative recommender: sequential encoder (HSTU / SASRec blocks), ranking mode, M-FALCON."""

from watchnext.models.hstu.encoder import (
    CONFIGS,
    HSTU_CONFIG,
    HSTU_LARGE_CONFIG,
    SASREC_CONFIG,
    EncoderConfig,
    SequentialEncoder,
)
from watchnext.models.hstu.mfalcon import MFalconScorer, NaiveScorer, mfalcon_scores, naive_scores
from watchnext.models.hstu.ranking import (
    MFalconRankingScorer,
    RankingConfig,
    SequentialRankingModel,
    naive_score_candidates,
    ranking_examples_to_arrays,
    score_candidates,
)

__all__ = [
    "CONFIGS",
    "HSTU_CONFIG",
    "HSTU_LARGE_CONFIG",
    "SASREC_CONFIG",
    "EncoderConfig",
    "MFalconRankingScorer",
    "MFalconScorer",
    "NaiveScorer",
    "RankingConfig",
    "SequentialEncoder",
    "SequentialRankingModel",
    "mfalcon_scores",
    "naive_score_candidates",
    "naive_scores",
    "ranking_examples_to_arrays",
    "score_candidates",
]
