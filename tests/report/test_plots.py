"""Figures carry what a reader needs: read back from the matplotlib objects before saving."""

import xml.etree.ElementTree as ET

import numpy as np

from exfiqa_jax.report import plots


def _legend(ax):
  return [t.get_text() for t in ax.get_legend().get_texts()]


def _below_axes(fig, ax):
  """The legend lies wholly below the axes' plotting area (covers no line)."""
  fig.canvas.draw()
  leg = ax.get_legend().get_window_extent()
  return leg.y1 <= ax.get_window_extent().y0 + 1e-6


def test_merge_identical_joins_labels_and_keeps_distinct_series():
  x = np.arange(3)
  got = plots.merge_identical(
    {"a": (x, [1, 2, np.nan]), "b": (x, [1, 2, 3]), "c": (x, [1, 2, np.nan]), "d": (x, [1, 2, 3])}
  )
  assert list(got) == ["a = c", "b = d"]
  np.testing.assert_array_equal(got["b = d"][1], [1, 2, 3])


def test_edc_figure_marks_limits_best_and_fmr():
  curves = {
    "best subset: mean({1,2})": ([0, 0.1, 0.5, 1], [0.3, 0.2, 0.1, 0]),
    "depth-weighted (all exits)": ([0, 0.2, 1], [0.3, 0.15, 0]),
    "last exit (exit 2)": ([0, 0.2, 1], [0.3, 0.15, 0]),  # identical: drawn once
  }
  panels = [plots.EdcPanel(fr, curves, 0.3, (0.2, 0.3)) for fr in ("ArcFace", "MagFace")]
  fig = plots.edc_figure(panels, title="lfw: EDC", fmr=1e-3)
  assert fig._suptitle.get_text() == "lfw: EDC"
  assert len(fig.axes) == 2
  for ax, fr in zip(fig.axes, ("ArcFace", "MagFace"), strict=True):
    assert ax.get_title() == f"FR model: {fr}"
    assert ax.get_xlabel() == "fraction of genuine comparisons discarded (lowest quality first)"
    assert ax.get_ylabel() == "FNMR at the fixed threshold of FMR = 0.001"
    assert _legend(ax) == [
      "best subset: mean({1,2})",
      "depth-weighted (all exits) = last exit (exit 2)",
      "theoretical best, max(0, e0 - d)",
      "pAUC discard limits 0.2, 0.3",
    ]
    lines = ax.get_lines()
    assert len(lines) == 2 + 1 + 2  # distinct curves, the best, two limits
    limits = [ln.get_xdata()[0] for ln in lines if ln.get_linestyle() == ":"]
    assert limits == [0.2, 0.3]
    best = next(ln for ln in lines if ln.get_label().startswith("theoretical"))
    d, e = best.get_xdata(), best.get_ydata()
    np.testing.assert_allclose(e[d < 0.3], 0.3 - d[d < 0.3])  # the line the tables integrate
    assert (e[d >= 0.3] == 0).all()
    assert _below_axes(fig, ax)


def test_erc_figure_names_fmr_and_shows_warning():
  x = np.arange(96) / 100
  panel = plots.ErcPanel(
    "self", {"exit 6": (x, 0.1 - x / 20)}, (x, np.maximum(0.1 - x, 0)), "FMR 0.001 not resolvable"
  )
  fig = plots.erc_figure([panel], title="demo: FNMR at FMR = 0.001", fmr=1e-3)
  ax = fig.axes[0]
  assert ax.get_ylabel() == "FNMR at FMR = 0.001"
  assert ax.get_xlabel() == "fraction of comparisons rejected (lowest quality first)"
  assert _legend(ax) == ["exit 6", "theoretical best (false non-matches rejected first)"]
  assert [t.get_text() for t in ax.texts] == ["FMR 0.001 not resolvable"]
  assert _below_axes(fig, ax)


def test_per_exit_puts_erc_and_edc_on_their_own_axes():
  erc = {"erc_area@0.001": [0.2, 0.15, 0.1], "erc_area@0.0001": [0.3, 0.2, 0.2]}
  edc = {"edc_area@0.2": [0.012, 0.011, 0.010], "edc_area@0.3": [0.02, 0.018, 0.017]}
  best = {"edc_best@0.2": [0.002] * 3, "edc_best@0.3": [0.002] * 3}
  fig = plots.per_exit_figure([plots.PerExitPanel("ArcFace", erc, edc, best)], title="t")
  left, right = fig.axes
  assert left.get_ylabel() == "ERC area (lower is better)"
  assert right.get_ylabel() == "EDC pAUC (lower is better)"
  assert _legend(left) == ["ERC area at FMR = 0.001", "ERC area at FMR = 0.0001"]
  assert _legend(right) == [
    "EDC pAUC to discard 0.2",
    "EDC pAUC to discard 0.3",
    "theoretical best EDC pAUC to discard 0.2 = theoretical best EDC pAUC to discard 0.3",
  ]
  lo, hi = right.get_ylim()
  assert lo < 0.002 and hi < 0.03  # the EDC axis is scaled to the EDC values, not flat
  assert list(left.get_xticks()) == [1, 2, 3]


def test_pareto_says_lower_is_better_and_marks_assessors(tmp_path):
  cost = np.repeat([1.0, 2.0, 3.0], 4)
  metric = np.linspace(0.3, 0.1, 12)
  panel = plots.ParetoPanel("self", cost, metric, [0, 4, 8], {"exit 3": (3.0, 0.12)})
  fig = plots.pareto_figure([panel], title="q", metric="edc_area@0.2")
  ax = fig.axes[0]
  assert ax.get_xlabel() == "GFLOPs per image (to the deepest exit fused)"
  assert ax.get_ylabel() == "EDC pAUC to discard 0.2 (lower is better)"
  assert _legend(ax) == ["every variant", "Pareto front", "exit 3"]
  assert ax.collections[0].get_rasterized()  # thousands of dots: a raster inside the SVG
  png, svg = plots.save(fig, str(tmp_path / "p.png"))
  assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  texts = "".join(ET.parse(svg).getroot().itertext())
  assert "lower is better" in texts  # text stays text


def test_attention_figure_has_face_shared_scale_colour_bar_and_scores():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
  maps = rng.random((8, 4, 4)) * np.arange(1, 9)[:, None, None]
  fig = plots.attention_figure(image, maps, np.linspace(0.1, 0.8, 8), title="a.png")
  titles = [ax.get_title() for ax in fig.axes]
  assert titles[0] == "face crop"
  assert titles[1:9] == [
    f"block {i + 1}: quality {q:.3f}" for i, q in enumerate(np.linspace(0.1, 0.8, 8))
  ]
  assert fig.axes[-1].get_ylabel() == "attention weight of the quality token"  # the colour bar
  overlays = [ax.get_images()[1] for ax in fig.axes[1:9]]
  assert {im.get_clim() for im in overlays} == {(0.0, float(maps.max()))}
  np.testing.assert_array_equal(fig.axes[0].get_images()[0].get_array(), image)
