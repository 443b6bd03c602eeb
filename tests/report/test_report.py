"""The cross-benchmark table against the per-pair-set results; its LaTeX structure; the
HTML report in a headless browser."""

import csv
import io
import re

import numpy as np
import pytest

from exfiqa_jax.evaluation.analysis import analyse, variant_name
from exfiqa_jax.report import cross, plots
from exfiqa_jax.report.document import Figures, Heading, Text, table
from exfiqa_jax.report.html import write_html
from tests.report.browser import open_page

DEPTH = 4


def _analysis(seed):
  rng = np.random.default_rng(seed)
  n, p = 90, 300
  exits = rng.normal(size=(n, DEPTH)).astype(np.float32)
  a, b = rng.integers(0, n, p), rng.integers(0, n, p)
  labels = rng.random(p) < 0.5
  q = exits[a, -1] + exits[b, -1]
  scores = rng.normal(labels * (1.0 + 0.3 * q), 0.6)
  return analyse(
    exits,
    a,
    b,
    labels,
    scores,
    cost=np.arange(1.0, DEPTH + 1),
    rules=("mean", "weighted"),
    fmrs=(0.05, 0.01),
    edc_fmr=0.05,
    edc_limits=(0.2, 0.3),
    exits=(2,),
  )


@pytest.fixture(scope="module")
def results():
  return [
    ("lfw", "ArcFace", _analysis(0)),
    ("lfw", "MagFace", _analysis(1)),
    ("ijbc", "ArcFace", _analysis(2)),
  ]


def test_cells_equal_the_per_pair_set_results(results):
  crosses = cross.cross_tables(results)
  assert [c.metric for c in crosses] == [
    "erc_area@0.05",
    "erc_area@0.01",
    "edc_area@0.2",
    "edc_area@0.3",
  ]
  sel = results[0][2].select
  # the overall best: the lowest mean selection metric, computed here from the rows
  keys = {}
  for _, _, an in results:
    t = an.table
    for i in range(len(t["subset"])):
      keys.setdefault((int(t["subset"][i]), str(t["rule"][i]), str(t["norm"][i])), []).append(
        float(t[sel][i])
      )
  mean = {k: np.mean(v) for k, v in keys.items()}
  overall = min(mean, key=lambda k: (mean[k], list(mean).index(k)))
  for c in crosses:
    assert c.assessors == [f"exit {e}" for e in range(1, DEPTH + 1)] + [
      "depth-weighted (all exits)",
      cross.PER_COLUMN,
      cross.OVERALL,
    ]
    assert c.overall == variant_name(*overall, DEPTH)
    for j, (_, _, an) in enumerate(results):
      rows = {r["variant"]: r for r in an.rows}
      for e in range(1, DEPTH + 1):
        assert c.values[e - 1, j] == rows[f"exit {e}"][c.metric]
      assert c.values[DEPTH, j] == rows["weighted(all)"][c.metric]
      best = next(r for r in an.rows if r["kind"].startswith("best by"))
      assert c.values[DEPTH + 1, j] == best[c.metric]
      assert c.per_column[j] == best["variant"]
      t = an.table
      k = next(
        i
        for i in range(len(t["subset"]))
        if (int(t["subset"][i]), str(t["rule"][i]), str(t["norm"][i])) == overall
      )
      assert c.values[DEPTH + 2, j] == t[c.metric][k]
    bold = c.best()
    assert (bold == (c.values == np.nanmin(c.values, axis=0))).all()
  sel_table = next(c for c in crosses if c.metric == sel)
  assert sel_table.best()[DEPTH + 1].all()  # the per-column best is the column's optimum


def test_latex_is_balanced_with_one_row_per_assessor(results):
  crosses = cross.cross_tables(results)
  tex = cross.to_latex(crosses)
  assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == len(crosses)
  for part, c in zip(tex.split("\\begin{tabular}")[1:], crosses, strict=True):
    body = part.split("\\end{tabular}")[0]
    spec = re.match(r"\{([^}]*)\}", body).group(1)
    ncols = spec.count("c") + spec.count("l")
    assert ncols == 1 + 3
    depth = 0
    for ch in re.sub(r"\\[{}]", "", body):  # escaped braces are text
      depth += {"{": 1, "}": -1}.get(ch, 0)
      assert depth >= 0
    assert depth == 0
    rows = [r for r in body.split("\n") if r.endswith("\\\\")]
    data = rows[2:]
    assert len(data) == len(c.assessors)
    for r in data:
      assert len(re.split(r"(?<!\\)&", r)) == ncols
    assert "\\multicolumn{2}{c|}{lfw}" in rows[0] and "\\multicolumn{1}{c}{ijbc}" in rows[0]
    assert data[-1].startswith("best subset over all benchmarks: ")
    assert body.count("\\textbf{") == int(c.best().sum())


def test_csv_and_markdown(results):
  crosses = cross.cross_tables(results)
  rows = list(csv.reader(io.StringIO(cross.to_csv(crosses))))
  assert rows[0] == ["metric", "assessor", "variant", "lfw/ArcFace", "lfw/MagFace", "ijbc/ArcFace"]
  body = [r for r in rows[1:] if r[0] == "erc_area@0.01" and r[1] == "exit 2"]
  np.testing.assert_allclose([float(x) for x in body[0][3:]], crosses[1].values[1], atol=1e-10)
  md = cross.blocks(crosses)
  assert sum(isinstance(b, type(md[-1])) for b in md) == len(crosses)


def test_html_report_loads_every_image_without_errors(tmp_path, results):
  x = np.linspace(0, 1, 5)
  for name in ("one", "two"):
    fig = plots.erc_figure(
      [plots.ErcPanel("self", {"exit 1": (x, x)}, (x, x))], title=name, fmr=1e-3
    )
    plots.save(fig, str(tmp_path / "plots" / f"{name}.png"))
  blocks = [
    Heading("A **report**", 1),
    Text("- **Warning:** one\n- two"),
    table([{"v": 0.5, "name": "<exit 1>"}], ["name", "v"]),
    Figures(["plots/one.png", "plots/two.png"]),
    *cross.blocks(cross.cross_tables(results)),
  ]
  path = write_html(str(tmp_path / "report.html"), blocks, "A report")
  page = open_page(path)
  assert page["title"] == "A report"
  assert len(page["images"]) == 2
  assert all(
    src.startswith("data:image/png;base64,") and done and width > 100
    for src, done, width in page["images"]
  )
  assert page["errors"] == []
  text = open(path).read()
  assert "&lt;exit 1&gt;" in text and "<b>0." in text  # escaped, and the bold best
  with pytest.raises(FileNotFoundError, match="missing.png: a figure of the report is missing"):
    write_html(str(tmp_path / "bad.html"), [Figures(["missing.png"])], "x")


def test_report_figures_have_a_panel_per_fr_model_and_a_line_per_assessor(results):
  from exfiqa_jax.report.summary import figures

  group = [(fr, an) for d, fr, an in results if d == "lfw"]
  figs = figures("lfw", group)
  assert list(figs) == ["edc", "erc_fmr0.05", "erc_fmr0.01", "per_exit", "pareto", "pairs"]
  for name in ("edc", "erc_fmr0.05", "erc_fmr0.01", "pareto", "pairs"):
    titled = [ax for ax in figs[name].axes if ax.get_title().startswith("FR model: ")]
    assert [ax.get_title() for ax in titled] == ["FR model: ArcFace", "FR model: MagFace"]
  assert (
    figs["erc_fmr0.01"]._suptitle.get_text()
    == "lfw: FNMR at FMR = 0.01 against the fraction rejected\n(curves at 1% rejection "
    "steps; the ERC areas in the tables use the protocol's 5% steps)"
  )
  for ax, (_, an) in zip(figs["edc"].axes, group, strict=True):
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assessors = [ln for ln in labels if not ln.startswith(("theoretical", "pAUC"))]
    # best subset, depth-weighted fusion, last exit, the named exit 2 (merged if identical)
    assert sum(len(x.split(" = ")) for x in assessors) == len(an.curves) == 4
    assert any(x.startswith("best subset: ") for x in assessors)
    assert any("exit 2" in x.split(" = ") for x in assessors)
  assert "weighted mean (depth weights w_i = i)" in figs["pairs"]._suptitle.get_text()
  assert figs["pareto"].axes[0].get_ylabel() == "EDC pAUC to discard 0.2 (lower is better)"
  for fig in figs.values():
    plots.pyplot().close(fig)
