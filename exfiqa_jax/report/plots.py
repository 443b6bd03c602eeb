"""Figures of the evaluation report (matplotlib, no display needed).

Each `*_figure` function builds and returns a Figure with one panel per FR
model (a grid of at most MAX_COLUMNS panels a row, one y-scale for the panels of one
quantity), so that a test can read back titles, axis labels, legend entries and
lines before `save` writes it as PNG and SVG. The conventions are those of
quality-assessment reports: the EDC of ISO/IEC 29794-1 (FNMR at a fixed
threshold against the fraction of genuine comparisons discarded, with the
partial-area limits and the theoretical best curve), the FNMR-against-fraction-
rejected panels at each FMR, one line per quality assessor. Series whose values
are identical are drawn once with their labels joined by " = ", so that no line
hides another; legends sit below the axes, never over the lines.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from exfiqa_jax.fileio import write_bytes
from exfiqa_jax.report.labels import metric_label

if TYPE_CHECKING:
  from matplotlib.figure import Figure

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]  # label -> (x [K], y [K])
BEST_STYLE = dict(color="black", linestyle="--", linewidth=1.2)
LIMIT_STYLE = dict(color="grey", linestyle=":", linewidth=1.2)
ADAPTIVE_COLORS = ("C1", "C2", "C4", "C5", "C6", "C8", "C9")  # not the front's C3 nor C7 dots


@functools.cache
def pyplot():
  """matplotlib.pyplot on the Agg backend (no display), imported at the first figure:
  about 0.45 s, which a command whose workers draw its figures (`exfiqa sweep`,
  `exfiqa_jax.fusion.workers`) never spends itself."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def render(make, panels, name: str, **kwargs) -> dict[str, bytes]:
  """`figure_files(make(panels, **kwargs), name)`: a figure built and made into files
  in one call, which a worker process can run (`fusion.workers.call`) before the output
  folder that takes the files exists."""
  return figure_files(make(panels, **kwargs), name)


def figure_files(fig: Figure, name: str) -> dict[str, bytes]:
  """`fig` as {`name`.png: bytes, `name`.svg: bytes}; closes it. SVG text stays text
  (editable in a paper)."""
  # the layout and the tight bounding box once, for both files: savefig's "tight"
  # and the constrained layout each cost a dry-run draw per file (a third of the time)
  dpi = 110
  fig.set_dpi(dpi)
  renderer = fig.canvas.get_renderer()
  fig.draw_without_rendering()
  plt = pyplot()
  pad = plt.rcParams["savefig.pad_inches"]
  box = fig.get_tightbbox(renderer).padded(pad, pad)
  fig.set_layout_engine("none")  # laid out: the saves below keep these positions
  out = {}
  for fmt in ("png", "svg"):
    buf = io.BytesIO()
    with plt.rc_context({"svg.fonttype": "none"}):
      fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches=box, metadata={"Date": None})
    out[f"{name}.{fmt}"] = buf.getvalue()
  plt.close(fig)
  return out


def save(fig: Figure, path: str) -> list[str]:
  """Writes `fig` as `path` (.png) and the same name with .svg (`figure_files`), each
  atomically; closes it. Returns the two paths."""
  folder, stem = os.path.split(os.path.splitext(path)[0])
  out = []
  for name, data in figure_files(fig, stem).items():
    out.append(os.path.join(folder, name))
    write_bytes(out[-1], data)
  return out


def merge_identical(series: Series) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Series with equal x and y (NaN equal to NaN) merged into one, labels joined
  by " = ", in first-seen order."""
  merged: dict[str, tuple[np.ndarray, np.ndarray]] = {}
  for label, (x, y) in series.items():
    x, y = np.asarray(x, float), np.asarray(y, float)
    for other, (ox, oy) in merged.items():
      if ox.shape == x.shape and np.array_equal(ox, x, equal_nan=True):
        if np.array_equal(oy, y, equal_nan=True):
          merged[f"{other} = {label}"] = merged.pop(other)
          break
    else:
      merged[label] = (x, y)
  return merged


MAX_COLUMNS = 2  # panels a row: a figure is at most ~1,150 px wide at any FR model count


def _panels(
  n: int, title: str, width: float = 5.2, height: float = 4.6, sharey: bool | str = False
) -> tuple[Figure, list]:
  """A grid of n panels, at most MAX_COLUMNS a row, so that text keeps its size on the
  page however many FR models there are; sharey: one y-scale for panels of one quantity.
  -> (figure, the n axes in reading order); the grid's spare cell is removed."""
  cols = min(n, MAX_COLUMNS)
  rows = -(-n // cols)
  fig, axes = pyplot().subplots(
    rows,
    cols,
    figsize=(width * cols, height * rows),
    squeeze=False,
    layout="constrained",
    sharey=sharey,
  )
  fig.suptitle(title, fontsize=11)
  flat = list(axes.flat)
  for ax in flat[n:]:
    fig.delaxes(ax)
  for ax in flat[:n]:
    ax.yaxis.set_tick_params(labelleft=True)  # every panel keeps its scale's numbers
  return fig, flat[:n]


def panel_title(name: str) -> str:
  """A panel's title: `FR model: NAME`, or `name` itself when it says what it is
  (`pair set: demo_self` for saved inputs whose FR model the caller cannot tell)."""
  return name if ": " in name else f"FR model: {name}"


def _legend_below(ax, ncol: int = 1) -> None:
  ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8, ncol=ncol, frameon=False)


def _lines(ax, series: Series, step: bool = False, colors: Mapping[str, str] | None = None):
  """One line per distinct series; `colors` maps a label prefix to a colour (so an
  assessor keeps its colour in every panel)."""
  for i, (label, (x, y)) in enumerate(merge_identical(series).items()):
    color = next((c for k, c in (colors or {}).items() if label.startswith(k)), f"C{i}")
    if step:
      ax.step(x, y, where="post", label=label, color=color)
    else:
      ax.plot(x, y, label=label, color=color, marker="o", markersize=2.5)


@dataclasses.dataclass
class EdcPanel:
  """One FR model's EDC: curves label -> (discard [K], error [K]), the starting
  error e0 (before any discard) and the partial-area limits."""

  name: str
  curves: Series
  e0: float
  limits: Sequence[float]


def edc_best_curve(e0: float, points: int = 201) -> tuple[np.ndarray, np.ndarray]:
  """The theoretical best EDC line max(0, e0 - d), whose partial area the tables report
  as `edc_best` (docs/protocol.md §5)."""
  d = np.linspace(0, 1, points)
  return d, np.maximum(0.0, e0 - d)


def edc_figure(
  panels: Sequence[EdcPanel], *, title: str, fmr: float, colors: Mapping[str, str] | None = None
) -> Figure:
  """ISO/IEC 29794-1 EDC panels: FNMR at the threshold fixed at `fmr` on all
  comparisons, against the fraction of genuine comparisons discarded."""
  fig, axes = _panels(len(panels), title, sharey=True)
  for ax, p in zip(axes, panels, strict=True):
    _lines(ax, p.curves, step=True, colors=colors)
    ax.plot(*edc_best_curve(p.e0), label="theoretical best, max(0, e0 - d)", **BEST_STYLE)
    for j, limit in enumerate(p.limits):
      ax.axvline(
        limit,
        label="pAUC discard limits " + ", ".join(f"{x:g}" for x in p.limits) if j == 0 else None,
        **LIMIT_STYLE,
      )
    ax.set(
      title=f"FR model: {p.name}",
      xlabel="fraction of genuine comparisons discarded (lowest quality first)",
      ylabel=f"FNMR at the fixed threshold of FMR = {fmr:g}",
      xlim=(0, 1),
    )
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _legend_below(ax)
  return fig


@dataclasses.dataclass
class ErcPanel:
  """One FR model's ERC at one FMR: curves label -> (fraction rejected [K], FNMR
  [K]), the theoretical best (same x) and a warning line (FMR not resolvable)."""

  name: str
  curves: Series
  best: tuple[Sequence[float], Sequence[float]]
  warning: str = ""


def erc_figure(
  panels: Sequence[ErcPanel], *, title: str, fmr: float, colors: Mapping[str, str] | None = None
) -> Figure:
  """FNMR at `fmr` (threshold re-set on the kept comparisons) against the
  fraction of comparisons rejected, lowest quality first."""
  fig, axes = _panels(len(panels), title, sharey=True)
  for ax, p in zip(axes, panels, strict=True):
    _lines(ax, p.curves, colors=colors)
    ax.plot(*p.best, label="theoretical best (false non-matches rejected first)", **BEST_STYLE)
    ax.set(
      title=f"FR model: {p.name}",
      xlabel="fraction of comparisons rejected (lowest quality first)",
      ylabel=f"FNMR at FMR = {fmr:g}",
    )
    ax.set_ylim(bottom=0)
    if p.warning:
      ax.text(0.02, 0.98, p.warning, transform=ax.transAxes, va="top", fontsize=7, color="C3")
    ax.grid(alpha=0.3)
    _legend_below(ax)
  return fig


@dataclasses.dataclass
class PerExitPanel:
  """One FR model's single-exit metrics: metric key -> values at exits 1..L."""

  name: str
  erc: Mapping[str, Sequence[float]]  # erc_area@<fmr>
  edc: Mapping[str, Sequence[float]]  # edc_area@<limit>
  edc_best: Mapping[str, Sequence[float]]  # edc_best@<limit>


def per_exit_figure(panels: Sequence[PerExitPanel], *, title: str) -> Figure:
  """Each exit alone: ERC areas (left) and EDC partial areas (right) on their own
  axes, one row per FR model; the theoretical best EDC areas dashed."""
  fig, axes = pyplot().subplots(
    len(panels), 2, figsize=(10.8, 4.4 * len(panels)), squeeze=False, layout="constrained",
    sharey="col",
  )  # fmt: skip
  fig.suptitle(title, fontsize=11)
  for (left, right), p in zip(axes, panels, strict=True):
    for ax, group, what in ((left, p.erc, "ERC area"), (right, p.edc, "EDC pAUC")):
      series = {metric_label(k): (np.arange(1, len(v) + 1), v) for k, v in group.items()}
      _lines(ax, series)
      ax.set(
        title=f"FR model: {p.name}: {what} of each exit",
        xlabel="exit (block number; 1 = shallowest)",
        ylabel=f"{what} (lower is better)",
      )
      depth = len(next(iter(group.values())))
      ax.set_xticks(np.arange(1, depth + 1))
      ax.grid(alpha=0.3)
    best = {metric_label(k): (np.arange(1, len(v) + 1), v) for k, v in p.edc_best.items()}
    for label, (x, y) in merge_identical(best).items():
      right.plot(x, y, label=label, **BEST_STYLE)
    _legend_below(left)
    _legend_below(right)
  return fig


@dataclasses.dataclass
class ParetoPanel:
  """One FR model's sweep: cost [V] and metric [V] of every variant, the front's
  row indices, and named assessors label -> (cost, metric) to mark; adaptive:
  label -> (cost [K], metric [K]) of an adaptive policy's knob sweep, drawn as a
  separate marked series (mean GFLOPs of the exits actually run)."""

  name: str
  cost: Sequence[float]
  metric: Sequence[float]
  front: Sequence[int]
  marks: Mapping[str, tuple[float, float]]
  adaptive: Mapping[str, tuple[Sequence[float], Sequence[float]]] = dataclasses.field(
    default_factory=dict
  )


def pareto_figure(panels: Sequence[ParetoPanel], *, title: str, metric: str) -> Figure:
  """Every variant as a dot (rasterised in the SVG), the Pareto front (the lowest
  metric for its cost) as a step line, the named assessors marked."""
  fig, axes = _panels(len(panels), title, sharey=True)
  for ax, p in zip(axes, panels, strict=True):
    cost, value = np.asarray(p.cost, float), np.asarray(p.metric, float)
    ax.scatter(cost, value, s=4, alpha=0.25, color="C7", label="every variant", rasterized=True)
    front = np.asarray(p.front, int)
    ax.step(cost[front], value[front], where="post", color="C3", marker="o", label="Pareto front")
    for i, (label, (x, y)) in enumerate(p.marks.items()):
      ax.scatter([x], [y], s=60, marker="*D^sv"[i % 5], zorder=3, label=label, color=f"C{i}")
    for i, (label, (x, y)) in enumerate(p.adaptive.items()):
      ax.plot(
        x,
        y,
        marker="PXhd"[i % 4],
        markersize=6,
        linestyle="-",
        linewidth=1.0,
        zorder=2.5,  # under the named marks
        color=ADAPTIVE_COLORS[i % len(ADAPTIVE_COLORS)],
        label=f"adaptive: {label}",
      )
    ax.set(
      title=panel_title(p.name),
      xlabel="GFLOPs per image (to the deepest exit fused; adaptive: mean of the exits run)"
      if p.adaptive
      else "GFLOPs per image (to the deepest exit fused)",
      ylabel=f"{metric_label(metric)} (lower is better)",
    )
    ax.grid(alpha=0.3)
    _legend_below(ax)
  return fig


@dataclasses.dataclass
class HeatPanel:
  name: str
  grid: np.ndarray  # [L, L] metric of fusing exits i and j; diagonal: exit i alone


def heatmap_figure(panels: Sequence[HeatPanel], *, title: str, metric: str) -> Figure:
  """Two-exit fusion grids, one per FR model, each with its colour bar."""
  fig, axes = _panels(len(panels), title, width=5.2, height=4.8)
  finite = [g[np.isfinite(g)] for g in (np.asarray(p.grid, float) for p in panels)]
  values = np.concatenate(finite) if any(v.size for v in finite) else np.zeros(1)
  scale = dict(vmin=float(values.min()), vmax=float(values.max()))  # one colour scale
  for ax, p in zip(axes, panels, strict=True):
    im = ax.imshow(p.grid, cmap="viridis_r", origin="lower", **scale)
    ticks = np.arange(p.grid.shape[0])
    ax.set_xticks(ticks, ticks + 1)
    ax.set_yticks(ticks, ticks + 1)
    ax.set(title=panel_title(p.name), xlabel="exit j", ylabel="exit i")
    fig.colorbar(im, ax=ax, label=f"{metric_label(metric)} (lower is better)")
  return fig


def attention_figure(
  image: np.ndarray, maps: np.ndarray, exit_scores: Sequence[float], *, title: str
) -> Figure:
  """image: uint8 [H, W, 3]; maps: [L, g, g], the quality token's attention over
  the patches after each block; exit_scores: [L] the quality score at each exit.

  The face crop comes first; the maps share one colour scale (0 to the largest
  weight of any block) shown by one colour bar. A map covers the top-left
  g * patch pixels, the part the patches see.
  """
  depth, g, _ = maps.shape
  cols = min(depth, 6)
  rows = -(-depth // cols)
  fig = pyplot().figure(figsize=(1.9 * (cols + 1) + 0.8, 2.1 * rows), layout="constrained")
  grid = fig.add_gridspec(rows, cols + 1)
  face = fig.add_subplot(grid[:, 0] if rows > 1 else grid[0, 0])
  face.imshow(image)
  face.set_title("face crop", fontsize=8)
  face.axis("off")
  seen = image.shape[0] // g * g
  top = float(np.max(maps)) if maps.size else 1.0
  im = None
  block_axes = []
  for i in range(depth):
    ax = fig.add_subplot(grid[i // cols, 1 + i % cols])
    ax.imshow(image[:seen, :seen])
    im = ax.imshow(
      maps[i],
      cmap="inferno",
      alpha=0.65,
      vmin=0.0,
      vmax=top,
      extent=(0, seen, seen, 0),
      interpolation="nearest",
    )
    ax.set_title(f"block {i + 1}: quality {float(exit_scores[i]):.3f}", fontsize=7)
    ax.axis("off")
    block_axes.append(ax)
  fig.colorbar(im, ax=block_axes, label="attention weight of the quality token", shrink=0.9)
  fig.suptitle(title, fontsize=9)
  return fig
