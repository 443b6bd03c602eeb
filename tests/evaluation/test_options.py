"""One options table: `exfiqa evaluate` (a job's sections) and `exfiqa sweep` (KEY=VALUE
overrides) accept and refuse the same values, with the same one-line errors."""

import numpy as np
import pytest

from exfiqa_jax.cli import main
from exfiqa_jax.evaluation.options import SECTIONS, check_options, defaults, options
from exfiqa_jax.fusion.rules import RULES
from exfiqa_jax.metrics import make_pairset
from exfiqa_jax.metrics.pairset import METRIC_DEFAULTS


@pytest.fixture
def scores(tmp_path):
  rng = np.random.default_rng(0)
  ids = np.array([f"i{k}.png" for k in range(20)])
  np.savez(tmp_path / "sc.npz", paths=ids, exit_scores=rng.normal(size=(20, 3)).astype("f4"))
  with open(tmp_path / "pairs.txt", "w") as f:
    for k in range(40):
      f.write(f"{ids[k % 20]} {ids[(k * 7 + 1) % 20]} {k % 2} {rng.normal() + k % 2!r}\n")
  return tmp_path


def _both(tmp_path, scores, option: str, capsys) -> list[tuple[int, str]]:
  """(exit status, stderr) of `exfiqa evaluate` and `exfiqa sweep` given `option`."""
  evaluate = ["evaluate", "--config", "demo", f"out_dir={tmp_path}/e", "checkpoint=nowhere"]
  sweep = ["sweep", "--scores", f"{scores}/sc.npz", "--pairs", f"{scores}/pairs.txt"]
  sweep += ["--out", f"{tmp_path}/s", "--quiet"]
  out = []
  for argv in (evaluate, sweep):
    code = main([*argv, option])
    out.append((code, capsys.readouterr().err))
  return out


@pytest.mark.parametrize(
  "option, message",
  [
    ("metrics.fmrs=(1,)", "metrics.fmrs must be a non-empty list of FMRs in (0, 1)"),
    ("metrics.fmrs=()", "metrics.fmrs must be a non-empty list of FMRs in (0, 1)"),
    ("metrics.edc_fmr=1", "metrics.edc_fmr must be an FMR in (0, 1); got 1"),
    ("metrics.edc_limits=(0,)", "metrics.edc_limits must be a non-empty list of discard limits"),
    ("sweep.rules=mean", "sweep.rules must be a non-empty list of names from ('mean',"),
    ("sweep.top_k=0", "sweep.top_k must be a positive integer; got 0"),
    ("weights.simplex=-1", "weights.simplex must be a positive integer; got -1"),
    ("weights.powers=()", "weights.powers must be a non-empty list of numbers"),
  ],
)
def test_evaluate_and_sweep_refuse_the_same_values(tmp_path, scores, capsys, option, message):
  for code, err in _both(tmp_path, scores, option, capsys):
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
  assert not (tmp_path / "e").exists() and not (tmp_path / "s").exists()


def test_sweep_accepts_what_evaluate_accepts(tmp_path, scores, capsys):
  """An edge value both take: an EDC limit of 1 (discard everything is a valid limit)."""
  opts = ["metrics.edc_limits=(1.0,)", "metrics.fmrs=(0.5,)", "weights.simplex=2"]
  opts += ["weights.learn_steps=2", "sweep.rules=('mean',)"]
  check_options({"metrics": {"edc_limits": (1.0,), "fmrs": (0.5,)}}, "job.py")
  argv = ["sweep", "--scores", f"{scores}/sc.npz", "--pairs", f"{scores}/pairs.txt", "--cost=1,2,3"]
  assert main([*argv, "--out", f"{tmp_path}/s", "--quiet", *opts]) == 0
  assert (tmp_path / "s" / "sc.md").is_file()


def test_defaults_are_held_once_and_resolved():
  # the ERC/EDC settings are make_pairset's; template_quality forms the pair qualities
  assert defaults("metrics")["metrics"] == {**METRIC_DEFAULTS, "template_quality": "min"}
  assert SECTIONS["sweep"].defaults()["rules"] == RULES
  assert options({"sweep": {"top_k": 5}}, "sweep") == {**SECTIONS["sweep"].defaults(), "top_k": 5}
  assert options({}, "scoring") == {"batch_size": 32, "dtype": "float32", "channel_order": "rgb"}
  # make_pairset's own defaults are the table's
  pairs = (np.ones((3, 1), "f4"), [0, 1], [1, 2], [1, 0], [0.5, 0.1])
  ps = make_pairset(*pairs)
  x = make_pairset(*pairs, fmrs=(1e-3, 1e-4), edc_fmr=1e-3, limits=(0.2, 0.3))
  np.testing.assert_array_equal(np.asarray(ps.limits), np.asarray(x.limits))
  np.testing.assert_array_equal(np.asarray(ps.fmr_den), np.asarray(x.fmr_den))
  with pytest.raises(KeyError, match="job.py: unknown option metrics.fmr; known"):
    check_options({"metrics": {"fmr": (0.1,)}}, "job.py")
  with pytest.raises(TypeError, match="job.py: weights must be a dict of options; got 3"):
    check_options({"weights": 3}, "job.py")
