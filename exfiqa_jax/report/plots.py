"""PNG plots of the evaluation job (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from exfiqa_jax.fileio import atomic_path  # noqa: E402


def _save(fig, path: str) -> None:
  with atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
  plt.close(fig)


def curves(
  path: str,
  series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
  *,
  title: str,
  xlabel: str = "fraction of comparisons discarded",
  ylabel: str = "FNMR",
  step: bool = False,
) -> None:
  """Error-versus-discard curves: series maps a label to (x [K], y [K]).

  `step` draws a step-wise curve (EDC); otherwise points are joined (ERC).
  """
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for label, (x, y) in series.items():
    if step:
      ax.step(x, y, where="post", label=label)
    else:
      ax.plot(x, y, label=label)
  ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  _save(fig, path)


def per_exit(path: str, values: Mapping[str, Sequence[float]], *, title: str, ylabel: str) -> None:
  """A metric against exit depth 1..L, one line per metric name."""
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for label, v in values.items():
    ax.plot(np.arange(1, len(v) + 1), v, marker="o", label=label)
  ax.set(title=title, xlabel="exit (block)", ylabel=ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  _save(fig, path)


def pareto(
  path: str,
  cost: Sequence[float],
  metric: Sequence[float],
  front: tuple[Sequence[float], Sequence[float]],
  *,
  title: str,
  ylabel: str,
) -> None:
  """All variants as dots, the front (best metric per cost) as a line."""
  fig, ax = plt.subplots(figsize=(5.5, 4))
  ax.scatter(cost, metric, s=4, alpha=0.25, label="variants")
  ax.step(front[0], front[1], where="post", color="C3", marker="o", label="Pareto front")
  ax.set(title=title, xlabel="GFLOPs per image", ylabel=ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  _save(fig, path)


def heatmap(path: str, grid: np.ndarray, *, title: str, label: str) -> None:
  """grid: [L, L], the metric of fusing exits i and j (diagonal: exit i alone)."""
  fig, ax = plt.subplots(figsize=(5.5, 4.6))
  im = ax.imshow(grid, cmap="viridis_r", origin="lower")
  ticks = np.arange(grid.shape[0])
  ax.set_xticks(ticks, ticks + 1)
  ax.set_yticks(ticks, ticks + 1)
  ax.set(title=title, xlabel="exit j", ylabel="exit i")
  fig.colorbar(im, ax=ax, label=label)
  _save(fig, path)


def attention_grid(path: str, image: np.ndarray, maps: np.ndarray, *, title: str) -> None:
  """image: uint8 [H, W, 3]; maps: [L, g, g], one attention map per block, overlaid.

  The grid covers the top-left g*patch pixels, the part the patches see.
  """
  depth, g, _ = maps.shape
  cols = min(depth, 6)
  rows = -(-depth // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.0 * rows), squeeze=False)
  seen = image.shape[0] // g * g
  for i, ax in enumerate(axes.flat):
    ax.axis("off")
    if i < depth:
      ax.imshow(image[:seen, :seen])
      ax.imshow(
        maps[i], cmap="inferno", alpha=0.6, extent=(0, seen, seen, 0), interpolation="nearest"
      )
      ax.set_title(f"block {i + 1}", fontsize=8)
  fig.suptitle(title, fontsize=9)
  _save(fig, path)
