"""What the report says besides its tables (issue 26): a headline per benchmark and FR
model, the constant theoretical-best column stated once, the note that best subsets are
chosen on the pairs they are scored on, and links to the sweep pages."""

from __future__ import annotations

import re

import numpy as np

from exfiqa_jax.report.summary import write_report
from tests.report.test_report import _analysis


def test_headline_note_constant_column_and_sweep_links(tmp_path):
  results = [("lfw", "ArcFace", _analysis(0)), ("lfw", "MagFace", _analysis(1))]
  write_report(str(tmp_path), "# T", results, {"out_dir": str(tmp_path)})
  md = (tmp_path / "summary.md").read_text()
  head = md.split("## Headline")[1].split("\n## ")[0]
  for _, fr, an in results:
    sel = an.select
    best = next(r for r in an.rows if str(r["kind"]).startswith("best"))
    last = [r for r in an.rows if r["kind"] == "exit"][-1]
    v, w = float(best[sel]), float(last[sel])
    want = (
      f"- **lfw / {fr}**: best subset {best['variant']}: {v:.4g}; last exit "
      f"({last['variant']}): {w:.4g} ({(v - w) / w:+.0%});"
    )
    assert want in head
    assert v <= w  # the best subset is chosen among variants that include the last exit
  # the main table has no column that repeats one constant; the value is said once
  table = md.split("## lfw / ArcFace")[1].split("\n\n| variant | kind | GFLOPs |")[1]
  header = table.splitlines()[0]
  assert "best" not in header
  e = float(results[0][2].rows[0]["edc_best@0.2"])
  assert all(float(r["edc_best@0.2"]) == e for r in results[0][2].rows)
  assert "Theoretical best EDC pAUC (every row: it depends on the comparison scores alone): " in md
  assert f"{e:.4g}" in md
  assert "The best subsets are chosen on the very pairs they are scored on here" in md
  html = (tmp_path / "report.html").read_text()
  links = re.findall(r'<a href="(sweep/[^"]+)">', html)
  assert links == ["sweep/lfw_ArcFace.html", "sweep/lfw_MagFace.html"]
  assert np.isfinite(e)


def test_legend_and_panel_names_say_each_thing_once():
  """Pareto legends read `exit 6`, not `exit 6: exit 6`; a pair-set id is never called
  an FR model (issue 26)."""
  from exfiqa_jax.report import plots
  from exfiqa_jax.report.labels import mark_label

  assert mark_label("exit 6", "exit 6") == "exit 6"
  assert mark_label("depth-weighted", "weighted(all)") == "depth-weighted: weighted(all)"
  assert mark_label("best subset", "mean({3,6})") == "best subset"
  assert plots.panel_title("self") == "FR model: self"
  assert plots.panel_title("pair set: demo_self") == "pair set: demo_self"
  x = np.arange(3.0)
  fig = plots.pareto_figure(
    [
      plots.ParetoPanel(
        "pair set: demo_self", x, x, [0, 1], {mark_label("exit 6", "exit 6"): (1, 1)}
      )
    ],
    title="t",
    metric="edc_area@0.2",
  )
  ax = fig.axes[0]
  assert ax.get_title() == "pair set: demo_self"
  assert "exit 6" in [t.get_text() for t in ax.get_legend().get_texts()]
  plots.pyplot().close(fig)
