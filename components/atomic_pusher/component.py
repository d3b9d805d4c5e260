"""AtomicPusher component: the standard Pusher interface with an atomic filesystem push.

    AtomicPusher(model=trainer.outputs["model"],
                 model_blessing=evaluator.outputs["blessing"],
                 push_destination=PushDestination(filesystem=Filesystem(base_directory=BASE)))

writes `BASE/<version>/` (the layout TF Serving watches) only once the whole
SavedModel is there, and only if the model is blessed.
"""

from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from watchnext.components.atomic_pusher.executor import Executor


class AtomicPusher(tfx.components.Pusher):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
