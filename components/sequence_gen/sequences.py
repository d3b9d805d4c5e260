"""Per-user behaviour sequences with a leave-one-out split (pure Python; Beam calls it per user).

A user's events are ordered by (timestamp, request_id, position, item_id):
ties in time are broken the same way on every runner. Two sequence kinds:

- retrieval: the user's plays (click = 1), as in the HSTU public benchmark
  (MovieLens: every rating is a play);
- ranking: every impression, with its multitask labels, for target-aware
  ranking. The model reads it as interleaved tokens (Φ_0, a_0, Φ_1, a_1, ...,
  Φ_target) with a_i = HISTORY_ACTIONS[i] = click + 2 * like, and predicts the
  target's labels.

Leave-one-out (methods.md section 3) for a user with events e_1..e_n:

    test  example: history = e_1..e_{n-1} (most recent max_len), target = e_n      (n >= 2)
    train example: history = e_1..e_{n-2} (most recent max_len), target = e_{n-1}  (n >= 3)

so the train example holds "the sequence minus its last item" and the trainer
learns every next-item step inside it; the last item is only ever a test target.

Only the latest max_len + 2 events (and the latest max_len + 2 plays) are
kept while a user's events stream by (`most_recent`, `latest_of_both_kinds`),
so memory per user is O(max_len) however long the history.

Example:
    events = [SequenceEvent.from_example(e) for e in user_examples]
    train, test = leave_one_out(most_recent(events, max_len + 2), max_len)
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import NamedTuple

from watchnext.components import tf_example
from watchnext.models import features

DEFAULT_MAX_LEN = 200
_CLICK = 4  # SequenceEvent field index, for plain tuples
TRAIN_SPLIT = "train"
TEST_SPLIT = "test"


class SequenceEvent(NamedTuple):
    """One impression; tuple order (timestamp, request_id, position, item_id, ...) is the sort order."""

    timestamp: int
    request_id: bytes
    position: int
    item_id: bytes
    click: int = 0
    like: int = 0
    watch_time_s: float = 0.0
    rating: float = 0.0

    @classmethod
    def from_example(cls, example) -> SequenceEvent:
        value = tf_example.scalar
        return cls(
            timestamp=value(example, features.TIMESTAMP),
            request_id=value(example, features.REQUEST_ID, b""),
            position=value(example, features.POSITION, 0),
            item_id=value(example, features.ITEM_ID),
            click=value(example, features.CLICK, 0),
            like=value(example, features.LIKE, 0),
            watch_time_s=value(example, features.WATCH_TIME_S, 0.0),
            rating=value(example, features.RATING, 0.0),
        )

    @property
    def action(self) -> int:
        return self.click + 2 * self.like


def most_recent(events: Iterable[SequenceEvent], count: int) -> list[SequenceEvent]:
    """The `count` latest events in time order, holding at most `count` of them at once."""
    heap: list[SequenceEvent] = []
    for event in events:
        if len(heap) < count:
            heapq.heappush(heap, event)
        elif heap[0] < event:
            heapq.heapreplace(heap, event)
    return sorted(heap)


def is_play(event: SequenceEvent) -> bool:
    return event.click == 1


def latest_of_both_kinds(events: list[tuple], count: int) -> list[tuple]:
    """The events among the `count` latest, or among the `count` latest plays, in time order.

    Both sequence kinds can be built from what this keeps: ranking reads the
    latest events, retrieval the latest plays (which may reach further back).
    """
    ordered = sorted(events)
    if len(ordered) <= count:
        return ordered
    tail = ordered[-count:]
    older_plays_wanted = count - sum(1 for event in tail if event[_CLICK] == 1)
    older_plays = [event for event in ordered[:-count] if event[_CLICK] == 1]
    return (older_plays[-older_plays_wanted:] if older_plays_wanted > 0 else []) + tail


def _history_features(history: list[SequenceEvent], with_labels: bool) -> dict[str, list]:
    lists = {
        features.HISTORY_ITEM_IDS: [e.item_id for e in history],
        features.HISTORY_TIMESTAMPS: [e.timestamp for e in history],
        features.HISTORY_ACTIONS: [e.action for e in history],
        features.HISTORY_LENGTH: [len(history)],
    }
    if with_labels:
        lists[features.HISTORY_CLICKS] = [e.click for e in history]
        lists[features.HISTORY_LIKES] = [e.like for e in history]
        lists[features.HISTORY_WATCH_TIMES_S] = [float(e.watch_time_s) for e in history]
        lists[features.HISTORY_RATINGS] = [float(e.rating) for e in history]
    return lists


def sequence_example(
    user_id: bytes, history: list[SequenceEvent], target: SequenceEvent, with_labels: bool
) -> dict[str, list]:
    """Feature lists of one (history, target) example."""
    example = {
        features.USER_ID: [user_id],
        features.TARGET_ITEM_ID: [target.item_id],
        features.TARGET_TIMESTAMP: [target.timestamp],
        **_history_features(history, with_labels),
    }
    if with_labels:
        example[features.TARGET_CLICK] = [target.click]
        example[features.TARGET_LIKE] = [target.like]
        example[features.TARGET_WATCH_TIME_S] = [float(target.watch_time_s)]
        example[features.TARGET_RATING] = [float(target.rating)]
    return example


def leave_one_out(
    user_id: bytes, latest: list[SequenceEvent], max_len: int, with_labels: bool
) -> list[tuple[str, dict[str, list]]]:
    """(split, example) pairs from a user's latest max_len + 2 events in time order."""
    examples = []
    if len(latest) >= 3:
        history = latest[:-2][-max_len:]
        examples.append((TRAIN_SPLIT, sequence_example(user_id, history, latest[-2], with_labels)))
    if len(latest) >= 2:
        history = latest[:-1][-max_len:]
        examples.append((TEST_SPLIT, sequence_example(user_id, history, latest[-1], with_labels)))
    return examples
