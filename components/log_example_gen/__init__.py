"""LogExampleGen: raw interaction-log CSV files -> validated tf.Examples + rejected rows."""

from watchnext.components.log_example_gen.component import LogExampleGen, RejectedRows

__all__ = ["LogExampleGen", "RejectedRows"]
