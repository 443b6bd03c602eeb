"""A job's `adaptive` section: checked options, the study on each pair set, the report."""

import csv

import numpy as np
import pytest

from exfiqa_jax.adaptive import policy as P
from exfiqa_jax.evaluation.options import check_options
from exfiqa_jax.evaluation.run import adaptive_study, analyse_inputs
from exfiqa_jax.metrics.inputs import PairInputs
from exfiqa_jax.report.summary import write_report

DEPTH = 4


def _inputs(pairs=200):
  rng = np.random.default_rng(2)
  n = 2 * pairs
  true = rng.normal(size=n)
  exits = true[:, None] + rng.normal(size=(n, DEPTH)) * np.linspace(1, 0.2, DEPTH)
  a = np.arange(0, n, 2)
  labels = np.arange(pairs) % 2 == 0
  comp = np.round(np.where(labels, 0.6, 0.0) + rng.normal(size=pairs) * 0.3, 4)
  return dict(
    exit_scores=exits.astype(np.float32), a=a, b=a + 1, labels=labels, comparison=comp,
    cost=np.array([1.0, 2.0, 3.0, 4.0]),
  )  # fmt: skip


def test_job_options_are_checked():
  check_options({"adaptive": {"policies": ("delta",), "stages": (2, 4), "fraction": 0.3}}, "j.py")
  check_options({"adaptive": {"knobs": {"band": (0.0, 0.1)}, "seed": 3}}, "j.py")
  for bad, what in [
    ({"policies": ("fast",)}, "adaptive.policies must be a non-empty list of names from"),
    ({"fraction": 1.0}, "adaptive.fraction must be the fraction of pairs to calibrate on"),
    ({"knobs": {"band": "0.1"}}, "adaptive.knobs must be a dict {policy: (knob, ...)}"),
  ]:
    with pytest.raises(TypeError, match=what.replace("(", r"\(").replace(")", r"\)")):
      check_options({"adaptive": bad}, "j.py")
  with pytest.raises(KeyError, match="unknown option adaptive.budget"):
    check_options({"adaptive": {"budget": 3}}, "j.py")


def test_no_section_no_study_and_the_report_shows_one(tmp_path):
  z = PairInputs(**_inputs())
  cfg = {"metrics": {"fmrs": (0.05,), "edc_fmr": 0.05, "edc_limits": (0.25,)}}
  assert adaptive_study(z, cfg) is None
  cfg["adaptive"] = {"policies": ("delta", "band"), "stages": (2, 4), "knobs": {"delta": (0, 0.3)}}
  an = analyse_inputs(z, cfg)
  an.adaptive = adaptive_study(z, cfg, an.select)
  assert an.adaptive.select == an.select == "edc_area@0.25"  # ranked as the job's section
  assert adaptive_study(z, cfg).select == "erc_area@0.05"  # alone: the first ERC area
  assert [r["policy"] for r in an.adaptive.rows].count("delta") == 2
  summary = write_report(str(tmp_path), "# job", [("bench", "self", an)], cfg)
  text = open(summary).read()
  assert "### Adaptive early exit: bench / self" in text
  assert "`adaptive/bench_self_policies.json`" in text
  assert "plots/bench_self_adaptive_pareto.png" in text
  pols = P.load_sweep(str(tmp_path / "adaptive" / "bench_self_policies.json"))
  assert {p.name for p in pols} == {"delta", "band"} and all(p.stages == (2, 4) for p in pols)
  rows = list(csv.DictReader(open(tmp_path / "adaptive" / "bench_self_adaptive.csv")))
  assert rows[0]["policy"] == "static" and rows[1]["policy"] == "delta"
  assert rows[0]["erc_area@0.05"] == rows[1]["erc_area@0.05"]  # knob 0: the full fusion
  assert (tmp_path / "plots" / "bench_self_adaptive_pareto.svg").is_file()


def test_job_stages_and_knobs_refused_before_any_scoring(monkeypatch):
  from types import SimpleNamespace

  from exfiqa_jax.evaluation import run

  check_adaptive = run.check_adaptive
  check_adaptive({"adaptive": {"stages": (2, 4), "knobs": {"band": (0.0, 0.5)}}}, DEPTH)
  with pytest.raises(ValueError, match=r"policy band: knob 0\.9 outside \[0\.0, 0\.5\]"):
    check_adaptive({"adaptive": {"knobs": {"band": (0.1, 0.9)}}}, DEPTH)
  with pytest.raises(ValueError, match=r"stages must increase within 1\.\.4"):
    check_adaptive({"adaptive": {"stages": (2, 3)}}, DEPTH)
  # In a job the check comes right after the checkpoint's config is read: a stand-in
  # checkpoint that has nothing but a depth reaches it, and nothing after it.
  stand_in = SimpleNamespace(config=SimpleNamespace(depth=12))
  monkeypatch.setattr(run, "load", lambda *a, **k: stand_in)
  with pytest.raises(ValueError, match=r"stages must increase within 1\.\.12"):
    run.evaluate_job({"checkpoint": "c", "adaptive": {"stages": (3, 6)}})
