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
