"""Figures legible at five FR models (issue 26): panels in a grid of at most two columns,
one y-scale for panels of one quantity, and in headless Chromium at 1,400 px wide every
label of every figure of report.html at least 9 px high."""

from __future__ import annotations

import pytest

from exfiqa_jax.report import plots
from exfiqa_jax.report.summary import figures, write_report
from tests.report.test_report import _analysis

FR = ("ArcFace", "ElasticFace", "MagFace", "CurricularFace", "self")
DPI = 110  # plots.save


@pytest.fixture(scope="module")
def five():
  return [("lfw", fr, _analysis(i)) for i, fr in enumerate(FR)]


def _smallest_font_pt(fig) -> float:
  texts = [t for t in fig.findobj(lambda a: hasattr(a, "get_fontsize")) if t.get_text()]
  return min(float(t.get_fontsize()) for t in texts if t.get_visible())


def test_five_fr_models_lay_out_in_two_columns_with_a_shared_y_scale(five):
  figs = figures("lfw", [(fr, an) for _, fr, an in five])
  for name in ("edc", "erc_fmr0.05", "erc_fmr0.01", "pareto", "pairs"):
    fig = figs[name]
    titled = [ax for ax in fig.axes if ax.get_title().startswith("FR model: ")]
    assert [ax.get_title() for ax in titled] == [f"FR model: {fr}" for fr in FR]
    cols = sorted({round(ax.get_position().x0, 3) for ax in titled})
    assert len(cols) == 2, name  # a grid, not one 5-panel row
    width = fig.get_size_inches()[0] * DPI
    assert width <= 1200, (name, width)
    if name != "pairs":  # the same quantity: one y-scale
      assert len({ax.get_ylim() for ax in titled}) == 1, name
  heat = [ax.get_images()[0].get_clim() for ax in figs["pairs"].axes if ax.get_images()]
  assert len(set(heat)) == 1  # one colour scale for the two-exit grids
  per = figs["per_exit"].axes
  assert len({ax.get_ylim() for ax in per[0::2]}) == 1  # ERC column
  assert len({ax.get_ylim() for ax in per[1::2]}) == 1  # EDC column


def test_report_labels_are_at_least_9px_at_1400px_in_chromium(five, tmp_path):
  from tests.report.browser import open_page

  smallest = {
    n: _smallest_font_pt(f) for n, f in figures("lfw", [(fr, a) for _, fr, a in five]).items()
  }
  plots.pyplot().close("all")
  write_report(str(tmp_path), "# Five FR models", five, {"out_dir": str(tmp_path)})
  page = open_page(str(tmp_path / "report.html"), width=1400)
  assert page["errors"] == []
  shown = page["shown"]
  assert len(shown) == len(smallest)
  # the PNGs in the order of the report: edc, erc..., per_exit, pareto, pairs
  for (name, pt), (displayed, natural) in zip(smallest.items(), shown, strict=True):
    px = pt * DPI / 72 * displayed / natural
    assert px >= 9, f"{name}: smallest label {px:.1f} px at 1,400 px"
