"""Latency figure: per-frame stage timings of the pipeline, and the spread of the total."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

#: Key of the end-to-end latency series (if absent, the stages' sum is used).
TOTAL = "total"


def latency_series(frames_ms: Mapping[str, Sequence[float]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Validate per-frame latencies and split them into stages and the total.

    Args:
        frames_ms: stage name -> latency of each frame, milliseconds; all of the same, non-zero length.
            ``total`` (optional) is the end-to-end latency; without it, the sum of the stages.
    Returns:
        stages: stage name -> (F,) float64 ms, in the given order, without ``total``.
        total: (F,) float64 ms.
    """
    if not frames_ms:
        raise ValueError("no latency series given")
    series = {name: np.asarray(v, dtype=np.float64).reshape(-1) for name, v in frames_ms.items()}
    lengths = {name: v.size for name, v in series.items()}
    if len(set(lengths.values())) != 1:
        listed = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ValueError(f"latency series must have one value per frame each, got different lengths: {listed}")
    if next(iter(lengths.values())) == 0:
        raise ValueError("latency series are empty (no frames)")
    stages = {k: v for k, v in series.items() if k != TOTAL}
    total = series[TOTAL] if TOTAL in series else np.sum(list(stages.values()), axis=0)
    return stages, total


def latency_figure(
    path: str | Path,
    frames_ms: Mapping[str, Sequence[float]],
    title: str = "",
    budget_ms: float | None = None,
    dpi: int = 110,
) -> None:
    """Save a two-panel PNG of per-frame latencies.

    Left: the stages (every key but ``total``) stacked over the frame index, with the total as a
    line. Right: histogram of the total with its p50 and p99 marked. ``budget_ms`` (e.g. 100 for
    10 Hz) is drawn as a red dashed line on both.

    Args:
        path: output PNG (its folder is created).
        frames_ms: stage name -> latency of each frame, ms, e.g. decode, preprocess, inference,
            postprocess, total; all of the same length (else ValueError naming the lengths).
        title: figure title.
        budget_ms: latency budget, ms.
    """
    stages, total = latency_series(frames_ms)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = np.arange(total.size)
    fig, (ax_t, ax_h) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2.2, 1]})
    if stages:
        ax_t.stackplot(frames, *stages.values(), labels=list(stages), alpha=0.85, step="mid")
    ax_t.plot(frames, total, color="black", lw=1.0, label=TOTAL)
    ax_h.hist(total, bins=min(40, max(5, total.size // 5)), color="0.6")
    for q, style in ((50, "-"), (99, "--")):
        value = float(np.percentile(total, q))
        ax_h.axvline(value, color="black", ls=style, lw=1.2)
        ax_h.annotate(
            f"p{q} {value:.1f} ms",
            (value, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12 if q == 50 else -26),
            textcoords="offset points",
            fontsize=8,
        )
    if budget_ms is not None:
        ax_t.axhline(budget_ms, color="red", ls="--", lw=1.0, label=f"budget {budget_ms:g} ms")
        ax_h.axvline(budget_ms, color="red", ls="--", lw=1.0)
    ax_t.set_xlabel("frame")
    ax_t.set_ylabel("latency [ms]")
    ax_t.set_xlim(0, max(total.size - 1, 1))
    ax_t.set_ylim(0, 1.3 * max(float(total.max()), budget_ms or 0.0, 1e-3))  # headroom for the legend
    ax_t.legend(loc="upper left", fontsize=7, ncol=3, frameon=False)
    ax_t.set_title("per frame (stages stacked)")
    ax_h.set_xlabel(f"{TOTAL} latency [ms]")
    ax_h.set_ylabel("frames")
    ax_h.set_title(f"{TOTAL}: mean {total.mean():.1f} ms, max {total.max():.1f} ms")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
