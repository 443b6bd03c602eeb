"""`exfiqa sweep --scores/--inputs` applies KEY=VALUE overrides or refuses them."""

import csv

import numpy as np
import pytest

from exfiqa_jax.cli import main
from exfiqa_jax.fusion.engine import evaluate_variant
from exfiqa_jax.metrics import make_pairset


def _files(tmp_path, n=60, p=200, depth=4):
  rng = np.random.default_rng(0)
  exits = rng.normal(size=(n, depth)).astype(np.float32)
  ids = np.array([f"i{k}.png" for k in range(n)])
  np.savez(tmp_path / "sc.npz", paths=ids, exit_scores=exits)
  a, b = rng.integers(0, n, (2, p))
  labels = np.arange(p) % 2
  scores = np.round(rng.normal(size=p) + labels, 3)
  with open(tmp_path / "pairs.txt", "w") as f:
    for i, j, lab, s in zip(a, b, labels, scores, strict=True):
      f.write(f"{ids[i]} {ids[j]} {lab} {float(s)!r}\n")
  return exits, a, b, labels, scores


def _rows(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_overrides_set_metrics_rules_and_norms(tmp_path):
  exits, a, b, labels, scores = _files(tmp_path)
  base = ["sweep", "--quiet", "--scores", str(tmp_path / "sc.npz"), "--pairs"]
  base += [str(tmp_path / "pairs.txt"), "--depth-cost", "--out", str(tmp_path / "o")]
  opts = [
    "metrics.fmrs=(0.05,)",
    "metrics.edc_fmr=0.1",
    "metrics.edc_limits=(0.25,)",
    "sweep.rules=('median', 'max')",
    "sweep.norms=('none', 'rank')",
    "weights.simplex=3",
    "weights.learn_steps=2",
  ]
  assert main(base + opts) == 0
  rows = _rows(tmp_path / "o" / "sc_subsets.csv")
  assert {r["rule"] for r in rows} == {"mean", "weighted", "median", "max"}  # the paper's two stay
  assert {r["norm"] for r in rows} == {"none", "rank"}
  assert len(rows) == 15 * 4 * 2
  assert [k for k in rows[0] if "@" in k] == ["erc_area@0.05", "edc_area@0.25", "edc_best@0.25"]
  ps = make_pairset(exits, a, b, labels, scores, fmrs=(0.05,), edc_fmr=0.1, limits=(0.25,))
  row = next(r for r in rows if r["variant"] == "median({1,3,4}) [rank]")
  want = evaluate_variant(ps, [True, False, True, True], "median", "rank")
  assert float(row["erc_area@0.05"]) == pytest.approx(want["erc_area"][0], abs=1e-9)  # CSV digits
  assert float(row["edc_area@0.25"]) == pytest.approx(want["edc_area"][0], abs=1e-9)


def test_bad_overrides_are_refused(tmp_path, capsys):
  _files(tmp_path)
  base = ["sweep", "--scores", str(tmp_path / "sc.npz"), "--pairs", str(tmp_path / "pairs.txt")]
  base += ["--out", str(tmp_path / "o")]
  for extra, msg in [
    # the checks and messages of a job's options (exfiqa_jax.evaluation.options)
    ("sweep.rules=('avg',)", "sweep.rules must be a non-empty list of names from ('mean'"),
    ("sweep.norms='rank'", "sweep.norms must be a non-empty list of names from ('none'"),
    ("metrics.fmrs=(0, 1e-3)", "metrics.fmrs must be a non-empty list of FMRs in (0, 1)"),
    ("metrics.edc_fmr=2", "metrics.edc_fmr must be an FMR in (0, 1); got 2"),
    ("metrics.fmr=(1e-3,)", "unknown key 'metrics.fmr'"),
    ("checkpoint=x", "unknown key 'checkpoint'"),
  ]:
    assert main(base + [extra]) == 2
    assert msg in capsys.readouterr().err
  assert not (tmp_path / "o").exists()


def test_sweep_page_links_cannot_carry_a_scheme_from_the_file_name(tmp_path):
  """An inputs file named like a `javascript:` URL: every href/src of the page (and every
  figure link of the Markdown) is a `./` relative path with no scheme, except the page's
  own data: URIs (the embedded PNGs and the empty icon)."""
  import html
  import re
  import urllib.parse

  from exfiqa_jax.metrics.inputs import PairInputs

  exits, a, b, labels, scores = _files(tmp_path)
  name = "javascript:alert(1);x"
  PairInputs(exits, a, b, labels.astype(bool), scores, np.arange(1.0, 5.0)).save(
    str(tmp_path / f"{name}.npz")
  )
  opts = ["weights.simplex=2", "weights.learn_steps=2", "sweep.rules=('mean',)"]
  args = ["sweep", "--quiet", "--inputs", str(tmp_path / f"{name}.npz")]
  assert main([*args, "--out", str(tmp_path / "o"), *opts]) == 0
  page = (tmp_path / "o" / f"{name}.html").read_text()
  targets = [html.unescape(t) for t in re.findall(r'(?:href|src)\s*=\s*"([^"]*)"', page)]
  assert len(re.findall(r"(?:href|src)\s*=", page)) == len(targets) >= 5  # all quoted
  files = [t for t in targets if not t.startswith("data:")]
  assert sorted(files) == [
    f"./{urllib.parse.quote(name, safe='')}_{k}.svg" for k in ("pairs", "pareto")
  ]
  for t in files:
    assert urllib.parse.urlsplit(t).scheme == "" and t.startswith("./") and ":" not in t
    assert (tmp_path / "o" / urllib.parse.unquote(t)).is_file()  # still names the file
  assert {t for t in targets if t.startswith("data:")} <= {"data:,"} | {
    t for t in targets if re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/=]+", t)
  }
  md = (tmp_path / "o" / f"{name}.md").read_text()
  links = re.findall(r"!\[[^\]]*\]\(([^)]*)\)", md)
  assert len(links) == 2 and all(x.startswith("./") and ":" not in x for x in links)


def test_the_sweep_bar_names_its_pair_set(tmp_path, capsys):
  # issue 26: `exfiqa sweep` showed one unlabelled `sweep:` bar per pair set
  _files(tmp_path, depth=3)
  args = ["sweep", "--scores", str(tmp_path / "sc.npz"), "--pairs", str(tmp_path / "pairs.txt")]
  args += ["--depth-cost", "--out", str(tmp_path / "o"), "weights.simplex=2"]
  assert main(args + ["weights.learn_steps=2"]) == 0
  err = capsys.readouterr().err
  assert "sweep sc: 100%" in err and "sweep: " not in err
