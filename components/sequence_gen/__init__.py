"""SequenceGen: per-user retrieval and ranking sequences, leave-one-out, on Beam."""

from watchnext.components.sequence_gen.component import SequenceGen

__all__ = ["SequenceGen"]
