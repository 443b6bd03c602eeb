"""`exfiqa adaptive` on saved inputs: its files, the output policy, one-line errors."""

import csv
import json

import numpy as np
import pytest

from exfiqa_jax.adaptive import policy as P
from exfiqa_jax.cli import main
from exfiqa_jax.fusion.sweep import sweep
from exfiqa_jax.metrics import make_pairset
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.flops import exit_gflops

DEPTH = 4
COST = np.array([1.0, 2.0, 3.0, 4.0])


def _inputs(tmp_path, pairs=300):
  rng = np.random.default_rng(0)
  n = 2 * pairs
  true = rng.normal(size=n)
  exits = (true[:, None] + rng.normal(size=(n, DEPTH)) * np.linspace(1, 0.2, DEPTH)).astype(
    np.float32
  )
  a = np.arange(0, n, 2)
  b = a + 1
  labels = np.arange(pairs) % 2 == 0
  comp = np.round(np.where(labels, 0.6, 0.0) + rng.normal(size=pairs) * 0.3, 4)
  z = dict(exit_scores=exits, a=a, b=b, labels=labels, comparison=comp, cost=COST)
  z |= dict(metrics_fmrs=np.array([0.05]), metrics_edc_fmr=np.array(0.05))
  z |= dict(metrics_edc_limits=np.array([0.25]))
  np.savez(tmp_path / "bench_self.npz", **z)
  return z


def _args(tmp_path, *more):
  return ["adaptive", "--quiet", "--inputs", str(tmp_path / "bench_self.npz"), "--out"] + [
    str(tmp_path / "o"),
    "--stages",
    "2,4",
    *more,
  ]


def test_writes_policies_table_and_figure(tmp_path, capsys):
  z = _inputs(tmp_path)
  assert main(_args(tmp_path, "--knobs", "delta=0,0.1,0.5", "--policies", "delta,band")) == 0
  out = tmp_path / "o"
  for name in ("policies.json", "bench_self_adaptive.md", "bench_self_adaptive.csv"):
    assert (out / name).is_file(), name
  for ext in ("png", "svg"):
    assert (out / f"bench_self_adaptive_pareto.{ext}").is_file()
  pols = P.load_sweep(str(out / "policies.json"))
  assert [p.name for p in pols].count("delta") == 3 and {p.name for p in pols} == {"delta", "band"}
  assert all(p.stages == (2, 4) for p in pols)
  full = P.for_budget(str(out / "policies.json"), 4.0, "delta")
  assert full.never_stops_early and full.gflops == 4.0
  doc = json.load(open(out / "policies.json"))
  assert doc["split"]["calibration_pairs"] == 150 and doc["split"]["evaluation_pairs"] == 150
  rows = list(csv.DictReader(open(out / "bench_self_adaptive.csv")))
  assert [k for k in rows[0] if "@" in k] == ["erc_area@0.05", "edc_area@0.25", "edc_best@0.25"]
  static, first = rows[0], rows[1]
  assert static["policy"] == "static" and first["policy"] == "delta" and float(first["knob"]) == 0
  # the static row: the sweep's depth-weighted fusion of all exits on the evaluation pairs
  ev_pairs = np.setdiff1d(np.arange(300), _calibration_pairs())
  ps = make_pairset(
    z["exit_scores"], z["a"][ev_pairs], z["b"][ev_pairs], z["labels"][ev_pairs],
    z["comparison"][ev_pairs], fmrs=(0.05,), edc_fmr=0.05, limits=(0.25,),
  )  # fmt: skip
  t = sweep(ps, ("weighted",), ("none",), COST, masks=np.ones((1, DEPTH), bool))
  for row in (static, first):
    assert float(row["erc_area@0.05"]) == pytest.approx(float(t["erc_area@0.05"][0]), abs=1e-9)
    assert float(row["edc_area@0.25"]) == pytest.approx(float(t["edc_area@0.25"][0]), abs=1e-9)
  out_text = capsys.readouterr().out
  assert "wrote" in out_text
  # it says what it does before the work (it ran silently for 20 s)
  assert out_text.splitlines()[0].startswith(
    "adaptive: 300 pairs of " + str(tmp_path) + "/bench_self.npz: 0.5 of them (seed 0) "
    "calibrate the policies delta, band at stages 2,4, the others evaluate every knob"
  )


def _calibration_pairs():
  from exfiqa_jax.adaptive.evaluate import split_pairs

  a = np.arange(0, 600, 2)
  return split_pairs(a, a + 1, 600, 0.5, 0)["calibration"]


def test_outputs_are_kept_unless_force_and_checkpoint_folder(tmp_path, capsys):
  _inputs(tmp_path)
  small = ["--knobs", "delta=0,0.2", "--policies", "delta"]
  assert main(_args(tmp_path, *small)) == 0
  capsys.readouterr()
  assert main(_args(tmp_path, *small)) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and "exists; pass --force to overwrite it" in err
  assert main(_args(tmp_path, *small, "--force")) == 0
  for f in (tmp_path / "o").iterdir():  # any one output alone is kept: here the SVG figure
    f.unlink() if f.suffix != ".svg" else f.write_text("the user's own figure")
  capsys.readouterr()
  assert main(_args(tmp_path, *small)) == 2
  assert "exists; pass --force to overwrite it" in capsys.readouterr().err
  assert [f.read_text() for f in (tmp_path / "o").iterdir()] == ["the user's own figure"]
  assert main(_args(tmp_path, *small, "--checkpoint", str(tmp_path / "nope"))) == 2
  assert "no such checkpoint folder" in capsys.readouterr().err


def _run(argv) -> int:
  """main's exit status, also for argparse's own errors (which exit from inside)."""
  try:
    return main(argv)
  except SystemExit as e:
    return int(e.code)


@pytest.mark.parametrize(
  "more,message",
  [
    (["--stages", "2,3"], "stages must increase within 1..4 and end at the depth 4, got [2, 3]"),
    (["--knobs", "band=0.9"], "policy band: knob 0.9 outside [0.0, 0.5]"),
    (["--knobs", "fast=1"], "give NAME=v1,v2,... with NAME one of delta, band, gate"),
    (["--knobs", "delta=", "--policies", "delta"], "give at least one value after '='"),
    (["--policies", "delta,slow"], "unknown policy 'slow'; policies are delta, band, gate"),
    (["--fraction", "1.5"], "must lie strictly between 0 and 1, got 1.5"),
  ],
)
def test_bad_options_are_one_line_errors(tmp_path, capsys, more, message):
  _inputs(tmp_path)
  assert _run(_args(tmp_path, *more)) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert message in err[-1]
  assert not (tmp_path / "o" / "policies.json").exists()


def test_scores_need_pairs(tmp_path, capsys):
  assert main(["adaptive", "--scores", str(tmp_path / "s.npz")]) == 2
  assert "--scores needs --pairs" in capsys.readouterr().err


def test_pareto_figure_draws_adaptive_points_as_their_own_series():
  from exfiqa_jax.report import plots

  panel = plots.ParetoPanel(
    "self", [1.0, 2.0, 3.0], [0.3, 0.2, 0.25], [0, 1], {"depth-weighted": (3.0, 0.25)},
    {"delta": ([1.5, 2.5, 3.0], [0.28, 0.22, 0.25]), "band": ([1.2, 3.0], [0.4, 0.25])},
  )  # fmt: skip
  fig = plots.pareto_figure([panel], title="t", metric="erc_area@0.001")
  ax = fig.axes[0]
  labels = ax.get_legend_handles_labels()[1]
  assert labels[-2:] == ["adaptive: delta", "adaptive: band"]
  lines = {ln.get_label(): ln for ln in ax.get_lines()}
  assert list(lines["adaptive: delta"].get_xdata()) == [1.5, 2.5, 3.0]
  assert list(lines["adaptive: band"].get_ydata()) == [0.4, 0.25]
  assert "mean of the exits run" in ax.get_xlabel()
  plain = plots.pareto_figure(
    [plots.ParetoPanel("s", [1.0], [0.1], [0], {})], title="t", metric="m"
  )
  assert not any(lb.startswith("adaptive") for lb in plain.axes[0].get_legend_handles_labels()[1])


def test_scores_and_pair_list_give_the_same_study_as_saved_inputs(tmp_path):
  z = _inputs(tmp_path)
  ids = np.array([f"img{i}.png" for i in range(len(z["exit_scores"]))])
  np.savez(tmp_path / "bench_self_scores.npz", paths=ids, exit_scores=z["exit_scores"])
  with open(tmp_path / "pairs.txt", "w") as f:
    for i, j, lab, s in zip(z["a"], z["b"], z["labels"], z["comparison"], strict=True):
      f.write(f"{ids[i]} {ids[j]} {int(lab)} {float(s)!r}\n")
  common = ["--stages", "2,4", "--policies", "band", "--knobs", "band=0,0.2", "--quiet"]
  saved = ["--inputs", str(tmp_path / "bench_self.npz"), "--out", str(tmp_path / "a")]
  assert main(["adaptive", *saved, *common]) == 0
  scores = ["--scores", str(tmp_path / "bench_self_scores.npz"), "--pairs"]
  full = exit_gflops(ViTConfig(depth=DEPTH))  # given: --scores never assumes a model's costs
  scores += [str(tmp_path / "pairs.txt"), "--out", str(tmp_path / "b")]
  scores += ["--cost", ",".join(repr(g) for g in full)]
  assert main(["adaptive", *scores, *common]) == 0
  a = P.load_sweep(str(tmp_path / "a" / "policies.json"))
  b = P.load_sweep(str(tmp_path / "b" / "policies.json"))
  assert [p.calibration for p in a] == [p.calibration for p in b]
  assert b[0].never_stops_early and b[0].gflops == full[-1]
