"""HSTU vs SASRec speed benchmark (CPU or accelerator; TensorFlow or JAX backend); prints JSON.

Measures, side by side in one process:
  1. forward + backward time (training mode, dropout on) of one HSTU block vs one SASRec block at
     equal width d, for several sequence lengths n, with the backend's XLA jit on ("xla":
     tf.function(jit_compile=True) or jax.jit) and off ("off": tf.function without XLA on
     TensorFlow, op-by-op on JAX; "eager" and "graph" can be asked for explicitly). The batch
     holds --tokens tokens (at least one sequence). The two blocks are timed alternately in each
     repeat (warm-up calls excluded); reported: medians and their ratio hstu_over_sasrec (target
     <= 0.7 / 0.4 / 0.3 at n = 200 / 1024 / 4096) and the median of the per-repeat ratios.
     Each n is measured on full-length batches and, with --min-length-fractions, on right-padded
     batches (lengths ~ U[f n, n], passed to both blocks at run time): the HSTU block skips
     padding query blocks, the SASRec block (dense softmax attention) masks them.
     Blocks: HSTULayer (1 head, dqk = dv = d, blocked attention, position bias) and SASRecBlock
     as in the public SASRec baseline (1 head, ffn 50, dropout 0.2 also on the attention
     probabilities, like torch MultiheadAttention(dropout=0.2) there).
     A third block, "products_only" (blocked path only), is the HSTU block with its attention cut
     down to the six matrix products per query block (forward Q K^T and (.) V, the backward's
     four, in the same layouts) and nothing else: no position bias, no SiLU, no causal mask
     (padded keys are still zeroed and padding-only query blocks still skipped). It is a
     lower bound for any HSTU block doing those products with this block layout on this machine,
     so products_only_over_sasrec shows how much of a time-ratio target the products leave.
  2. M-FALCON vs naive candidate scoring with the HSTU encoder (2 blocks, d = 50) for one history
     of `--history` items and m candidates: candidates per second and the speed-up (target >= 50x
     at m = 1024). The naive scorer batches `--naive-batch` independent [history; candidate]
     forwards per call; if `--naive-max-candidates` is set below m, naive time is measured on that
     many candidates and scaled linearly, and the entry says "naive_extrapolated": true. Both
     scorers' times are medians over `--scoring-repeats` calls.

Examples:
    python benchmarks/hstu_speed.py                                   # full run (minutes on 2 cores)
    python benchmarks/hstu_speed.py --sizes 200,1024 --repeats 3 --m 64,1024 --modes xla
    KERAS_BACKEND=jax python benchmarks/hstu_speed.py --batch 8       # e.g. on a GPU machine
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from watchnext.models.hstu.encoder import HSTU_CONFIG, SequentialEncoder
from watchnext.models.hstu.mfalcon import MFalconScorer, NaiveScorer
from watchnext.models.layers.hstu import HSTULayer
from watchnext.models.layers.sasrec import SASRecBlock

TARGETS = {200: 0.7, 1024: 0.4, 4096: 0.3}
MFALCON_TARGET = (1024, 50.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="200,1024,4096", help="sequence lengths n (comma-separated)")
    parser.add_argument(
        "--tokens", type=int, default=8192, help="tokens per batch: batch = max(1, tokens // n)"
    )
    parser.add_argument("--batch", type=int, default=0, help="fixed batch size (overrides --tokens)")
    parser.add_argument("--width", type=int, default=50, help="model width d (HSTU dqk = dv = d / heads)")
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--ffn", type=int, default=50, help="SASRec FFN width")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--block-size", type=int, default=None, help="HSTU query block (default: layer's)")
    parser.add_argument("--hstu-impl", default="blocked", choices=["blocked", "dense"])
    parser.add_argument(
        "--min-length-fractions",
        default="1,0.5",
        help="per batch kind: each sequence's valid length ~ U[f n, n], right-padded to n, the same "
        "padding for both blocks (1 = full length, no padding)",
    )
    parser.add_argument("--modes", default="off,xla", help="off, xla, eager, graph (TF only)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (compile, caches)")
    parser.add_argument("--m", default="64,1024,4096", help="M-FALCON candidate counts (empty: skip)")
    parser.add_argument("--history", type=int, default=200, help="history length for M-FALCON")
    parser.add_argument("--num-items", type=int, default=5000)
    parser.add_argument("--micro-batch", type=int, default=256, help="M-FALCON micro-batch b_m")
    parser.add_argument("--naive-batch", type=int, default=64, help="sequences per naive forward call")
    parser.add_argument("--naive-max-candidates", type=int, default=0, help="0 = measure all m")
    parser.add_argument("--scoring-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def int_list(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


@keras.ops.custom_gradient
def products_only_attention(q: Any, k_t: Any, v: Any, bias: Any) -> Any:
    """(Q K^T) V and its backward as six matrix products, laid out as in `silu_attention`."""
    scores = keras.ops.matmul(q, k_t)

    def grad(*args: Any, upstream: Any = None) -> tuple[Any, Any, Any, Any]:
        d_out = args[0] if upstream is None else upstream
        d_scores = keras.ops.matmul(d_out, keras.ops.swapaxes(v, -1, -2))
        d_v_t = keras.ops.matmul(keras.ops.swapaxes(d_out, -1, -2), scores)
        return (
            keras.ops.matmul(d_scores, keras.ops.swapaxes(k_t, -1, -2)),
            keras.ops.matmul(keras.ops.swapaxes(q, -1, -2), d_scores),
            keras.ops.swapaxes(d_v_t, -1, -2),
            keras.ops.zeros_like(bias),
        )

    return keras.ops.matmul(scores, v), grad


class ProductsOnlyHSTU(HSTULayer):
    """HSTULayer whose query blocks do only the matrix products (the "products_only" floor)."""

    def attend_block(self, q: Any, k_t: Any, v: Any, bias: Any) -> Any:
        return products_only_attention(q, k_t, v, bias)


# -- backend-specific fwd+bwd steps ------------------------------------------------------------------


# Lengths are a runtime argument of the compiled step (not a captured constant), so the
# compiler cannot resolve which padding blocks are empty ahead of time.


def tf_step(layer: keras.layers.Layer, x: Any, cotangent: Any, mode: str, lengths: Any) -> Callable[[], Any]:
    import tensorflow as tf

    def step(x: Any, lengths: Any) -> Any:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x, lengths=lengths, training=True) * cotangent)
        return tape.gradient(loss, [x, *layer.trainable_variables])

    fn = step if mode == "eager" else tf.function(step, jit_compile=(mode == "xla"))
    return lambda: [g.numpy() for g in fn(x, lengths)[:1]]


def jax_step(layer: keras.layers.Layer, x: Any, cotangent: Any, mode: str, lengths: Any) -> Callable[[], Any]:
    import jax

    trainable = [v.value for v in layer.trainable_variables]
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def loss_fn(trainable: Any, x: Any, non_trainable: Any, lengths: Any) -> Any:
        y, new_non_trainable = layer.stateless_call(
            trainable, non_trainable, x, lengths=lengths, training=True
        )
        return (y * cotangent).sum(), new_non_trainable

    grad = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
    fn = jax.jit(grad) if mode == "xla" else grad
    state = {"non_trainable": non_trainable}

    def run() -> Any:
        (_, state["non_trainable"]), grads = fn(trainable, x, state["non_trainable"], lengths)
        return jax.block_until_ready(grads)

    return run


def make_step(
    layer: keras.layers.Layer, x: Any, cotangent: Any, mode: str, lengths: Any = None
) -> Callable[[], Any]:
    """One compiled fwd+bwd call of `layer` on right-padded `x` (`lengths` None: no padding)."""
    backend = keras.backend.backend()
    if mode == "off":
        mode = "graph" if backend == "tensorflow" else "eager"
    if backend == "tensorflow":
        return tf_step(layer, x, cotangent, mode, lengths)
    if backend == "jax":
        if mode == "graph":
            raise ValueError("mode 'graph' exists only on the TensorFlow backend")
        return jax_step(layer, x, cotangent, mode, lengths)
    raise ValueError(f"unsupported backend {backend}")


# -- measurements ------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(steps: dict[str, Callable[[], Any]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Alternate the steps in each repeat so load changes hit both alike; warm-up calls excluded."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            times[name].append(timed(fn))
    return times


def batch_size(args: argparse.Namespace, n: int) -> int:
    return args.batch if args.batch > 0 else max(1, args.tokens // n)


def build_blocks(args: argparse.Namespace, n: int) -> dict[str, keras.layers.Layer]:
    """The timed blocks by name: hstu, sasrec and (blocked path only) products_only."""
    head_dim = args.width // args.heads
    options = dict(num_heads=args.heads, dqk=head_dim, dv=head_dim, max_len=n, dropout=args.dropout)
    if args.block_size is not None:
        options["block_size"] = args.block_size
    blocks = {
        "hstu": HSTULayer(attention_impl=args.hstu_impl, **options),
        "sasrec": SASRecBlock(num_heads=args.heads, ffn_dim=args.ffn, dropout=args.dropout),
    }
    if args.hstu_impl == "blocked":
        blocks["products_only"] = ProductsOnlyHSTU(**options)
    for block in blocks.values():
        block.build((batch_size(args, n), n, args.width))
    return blocks


def padded_lengths(rng: np.random.Generator, batch: int, n: int, min_fraction: float) -> Any:
    """Valid lengths ~ U[ceil(min_fraction n), n] per sequence, or None for full-length batches."""
    if min_fraction >= 1.0:
        return None
    low = max(1, math.ceil(min_fraction * n))
    return keras.ops.convert_to_tensor(rng.integers(low, n + 1, size=batch).astype("int32"))


def block_benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    rng = np.random.default_rng(args.seed)
    results = []
    for n in int_list(args.sizes):
        shape = (batch_size(args, n), n, args.width)
        x = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
        cotangent = keras.ops.convert_to_tensor(rng.normal(size=shape).astype("float32"))
        blocks = build_blocks(args, n)
        for min_fraction in [float(f) for f in args.min_length_fractions.split(",") if f.strip()]:
            lengths = padded_lengths(rng, shape[0], n, min_fraction)
            valid = (
                1.0
                if lengths is None
                else float(np.sum(keras.ops.convert_to_numpy(lengths))) / (n * shape[0])
            )
            for mode in [m for m in args.modes.split(",") if m]:
                steps = {name: make_step(b, x, cotangent, mode, lengths) for name, b in blocks.items()}
                times = side_by_side(steps, args.repeats, args.warmup)
                hstu_s, sasrec_s = statistics.median(times["hstu"]), statistics.median(times["sasrec"])
                ratio = hstu_s / sasrec_s
                paired = statistics.median(h / s for h, s in zip(times["hstu"], times["sasrec"], strict=True))
                entry = {
                    "n": n,
                    "batch": shape[0],
                    "min_length_fraction": min_fraction,
                    "valid_token_fraction": round(valid, 3),
                    "mode": mode,
                    "hstu_ms": round(1e3 * hstu_s, 3),
                    "sasrec_ms": round(1e3 * sasrec_s, 3),
                    "hstu_over_sasrec": round(ratio, 3),
                    "median_paired_ratio": round(paired, 3),
                }
                if "products_only" in times:
                    floor_s = statistics.median(times["products_only"])
                    entry["products_only_ms"] = round(1e3 * floor_s, 3)
                    entry["products_only_over_sasrec"] = round(floor_s / sasrec_s, 3)
                if n in TARGETS:
                    entry["target"] = TARGETS[n]
                    entry["meets_target"] = ratio <= TARGETS[n]
                results.append(entry)
                print(json.dumps(entry), flush=True, file=_progress())
    return results


def scoring_benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    counts = int_list(args.m)
    if not counts:
        return []
    rng = np.random.default_rng(args.seed + 1)
    config = dataclasses.replace(HSTU_CONFIG, max_len=args.history)
    if args.block_size is not None:
        config = dataclasses.replace(config, block_size=args.block_size)
    encoder = SequentialEncoder(num_items=args.num_items, config=config)
    encoder.build()
    history = rng.integers(1, args.num_items + 1, size=(1, args.history)).astype("int32")
    jit = "xla" in args.modes.split(",")
    mfalcon = MFalconScorer(encoder, micro_batch_size=args.micro_batch, jit_compile=jit)
    naive = NaiveScorer(encoder, batch_size=args.naive_batch, jit_compile=jit)
    results = []
    for m in counts:
        candidates = rng.integers(1, args.num_items + 1, size=(1, m)).astype("int32")
        mfalcon(history, candidates)  # warm-up / compile
        fast = statistics.median(
            timed(lambda c=candidates: mfalcon(history, c)) for _ in range(args.scoring_repeats)
        )
        subset = m if args.naive_max_candidates <= 0 else min(m, args.naive_max_candidates)
        naive(history, candidates[:, : min(subset, args.naive_batch)])  # warm-up / compile
        slow = statistics.median(
            timed(lambda c=candidates[:, :subset]: naive(history, c)) for _ in range(args.scoring_repeats)
        ) * (m / subset)
        entry = {
            "m": m,
            "history": args.history,
            "micro_batch": args.micro_batch,
            "jit": jit,
            "mfalcon_s": round(fast, 4),
            "naive_s": round(slow, 4),
            "naive_measured_candidates": subset,
            "naive_extrapolated": subset < m,
            "mfalcon_candidates_per_s": round(m / fast, 1),
            "naive_candidates_per_s": round(m / slow, 1),
            "speedup": round(slow / fast, 1),
        }
        if m == MFALCON_TARGET[0]:
            entry["target_speedup"] = MFALCON_TARGET[1]
            entry["meets_target"] = slow / fast >= MFALCON_TARGET[1]
        results.append(entry)
        print(json.dumps(entry), flush=True, file=_progress())
    return results


def _progress() -> Any:
    import sys

    return sys.stderr


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    keras.utils.set_random_seed(args.seed)
    report = {
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "options": vars(args),
        "notes": {
            "hstu": "HSTULayer: 1 block, blocked causal attention (block_size option or layer default), "
            "relative position bias on, no time bias, dropout before f2",
            "sasrec": "SASRecBlock as the public baseline: dropout also on attention probabilities",
            "products_only": "HSTU block whose attention does only its six matrix products per "
            "query block: a lower bound for the hstu time with this block layout",
            "off": "tf.function without XLA on TensorFlow, op by op on JAX",
            "timing": "fwd+bwd w.r.t. input and weights; medians over repeats, blocks alternated",
        },
        "blocks": block_benchmark(args),
        "scoring": scoring_benchmark(args),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
