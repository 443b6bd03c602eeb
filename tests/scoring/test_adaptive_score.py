"""`exfiqa score --policy NAME --budget GFLOPS`: staged scoring against the static command."""

import json
import re

import numpy as np
import pytest
from PIL import Image

import exfiqa_jax
from exfiqa_jax.adaptive.policy import Policy, save
from exfiqa_jax.cli import main
from exfiqa_jax.models.flops import exit_gflops
from tests.score_helpers import TINY, faces, random_variables

N = 20  # 2 batches of 16: the second is padded, as the static command pads it
COST = exit_gflops(TINY)


def _cli(args, capsys):
  try:
    code = main([str(a) for a in args])
  except SystemExit as e:  # argparse's own errors
    code = e.code
  return code, capsys.readouterr()


def _error_line(err: str) -> str:
  """The one error line (argparse's own errors come after its usage lines)."""
  lines = [x for x in err.splitlines() if "error:" in x]
  assert len(lines) == 1 and "Traceback" not in err, err
  return lines[0]


def _sweep(scale=0.05):
  """A delta knob sweep (knob 0 never stops early) with made-up calibrated costs."""
  return [
    Policy("delta", 0.0, (1, 2, 3), 3, dict(scale=scale), gflops=COST[-1]),
    Policy("delta", 0.5, (1, 2, 3), 3, dict(scale=scale), gflops=0.8 * COST[-1]),
    Policy("delta", 2.0, (1, 2, 3), 3, dict(scale=scale), gflops=0.6 * COST[-1]),
    Policy("band", 0.0, (1, 2, 3), 3, dict(lo=[None] * 3, hi=[None] * 3), gflops=COST[-1]),
  ]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp("adaptive")
  _, params, stats = random_variables(seed=11)
  exfiqa_jax.save(str(root / "ckpt"), TINY, params, stats)
  (root / "imgs").mkdir()
  for i, x in enumerate(faces(N, 4)):
    Image.fromarray(x).save(root / "imgs" / f"f{i:02d}.png")
  return root


def _score(root, out, *extra):
  base = ["score", "--checkpoint", root / "ckpt", "--images", root / "imgs", "--out", out]
  return [*base, "--batch-size", "16", "--quiet", *extra]


@pytest.fixture(scope="module")
def static(root):
  """The static full pass, the reference (`exfiqa score` without a policy)."""
  assert main([str(a) for a in _score(root, root / "static.npz")]) == 0
  return np.load(root / "static.npz")


def _loop_stops(policy, exits):
  """Per image alone, the first stage where the policy stops it."""
  return np.array(
    [next(k for k in policy.stages if k == 3 or policy.stop(r[None, :k], k)[0]) for r in exits]
  )


def test_full_budget_reproduces_the_static_pass(root, static, tmp_path, capsys):
  save(_sweep(), str(root / "ckpt" / "policies.json"), cost_gflops=list(COST))
  out = tmp_path / "full.npz"
  code, io = _cli(_score(root, out, "--policy", "delta", "--budget", str(COST[-1])), capsys)
  assert code == 0 and "policy delta knob 0" in io.out
  z = np.load(out)
  assert z["paths"].tolist() == static["paths"].tolist()
  np.testing.assert_array_equal(z["exit_scores"], static["exit_scores"])  # bit for bit
  np.testing.assert_array_equal(z["blocks_run"], np.full(N, 3))
  e = static["exit_scores"].astype(np.float64)
  np.testing.assert_allclose(z["quality"], (e @ [1, 2, 3]) / 6, rtol=1e-6)
  meta = json.loads(str(z["policy"]))
  assert meta["name"] == "delta" and meta["knob"] == 0.0
  assert meta["mean_gflops"] == pytest.approx(COST[-1]) == meta["calibrated_gflops"]
  assert "embeddings" not in z


def test_budget_picks_the_knob_and_images_stop_early(root, static, tmp_path, capsys):
  e = static["exit_scores"]
  w = np.arange(1, 4)
  running = np.cumsum(e * w, axis=1) / np.cumsum(w)
  scale = float(np.median(np.abs(running[:, 1] - running[:, 0]))) / 0.5  # half stop at 2
  path = tmp_path / "sweep.json"
  save(_sweep(scale), str(path), cost_gflops=list(COST))
  out = tmp_path / "cheap.npz"
  args = _score(root, out, "--policy", "delta", "--budget", str(0.85 * COST[-1]))
  code, io = _cli([*args, "--policy-file", path], capsys)
  assert code == 0, io.err
  z = np.load(out)
  policy = _sweep(scale)[1]  # the largest calibrated cost within 0.85 of the full pass
  stops = _loop_stops(policy, e)
  assert 0 < (stops < 3).sum() < N
  np.testing.assert_array_equal(z["blocks_run"], stops)
  ran = np.arange(3)[None, :] < stops[:, None]
  np.testing.assert_array_equal(z["exit_scores"][ran], e[ran])
  assert np.isnan(z["exit_scores"][~ran]).all()
  np.testing.assert_array_equal(z["quality"], policy.quality(e, stops))
  meta = json.loads(str(z["policy"]))
  assert meta["knob"] == 0.5 and meta["policy_file"] == str(path)
  by_hand = sum(COST[k - 1] for k in stops.tolist()) / len(stops)  # GFLOPs of each exit run
  assert meta["mean_gflops"] == pytest.approx(by_hand, rel=1e-12) and by_hand < COST[-1]


def test_work_dir_resumes_and_refuses_another_policy(root, static, tmp_path, capsys):
  save(_sweep(), str(tmp_path / "p.json"), cost_gflops=list(COST))
  pol = ["--work-dir", tmp_path / "work", "--policy-file", tmp_path / "p.json", "--policy"]
  assert _cli(_score(root, tmp_path / "a.npz", *pol, "delta", "--budget", "1"), capsys)[0] == 0
  # The same run again: its chunks are complete and read back.
  assert _cli(_score(root, tmp_path / "b.npz", *pol, "delta", "--budget", "1"), capsys)[0] == 0
  np.testing.assert_array_equal(
    np.load(tmp_path / "a.npz")["exit_scores"], np.load(tmp_path / "b.npz")["exit_scores"]
  )
  other = _score(root, tmp_path / "c.npz", *pol, "band", "--budget", "1")
  code, io = _cli(other, capsys)
  assert code == 2 and "another run" in _error_line(io.err) and "policy" in io.err
  assert _cli([*other, "--force"], capsys)[0] == 0


@pytest.mark.parametrize(
  "extra, message",
  [
    (["--policy", "nope", "--budget", "1"], r"unknown policy 'nope'; policies are delta"),
    (["--policy", "delta"], r"--policy needs --budget"),
    (["--budget", "1"], r"--budget and --policy-file go with --policy"),
    (["--policy", "delta", "--budget", "1e-9"], r"below the cheapest calibrated knob"),
    (["--policy", "gate", "--budget", "1"], r"no policy 'gate' in the sweep"),
    (["--policy", "delta", "--budget", "1", "--policy-file", "NOFILE"], r"no such policy file"),
    (["--policy", "delta", "--budget", "1", "--policy-file", "BAD"], r"not a policy file"),
    (["--policy", "delta", "--budget", "1", "--policy-file", "DEEP"], r"for depth 12, the model 3"),
    (["--policy", "delta", "--budget", "0"], r"--budget: must be a positive number"),
    (["--policy", "delta", "--budget", "x"], r"--budget: 'x' is not a number"),
  ],
)
def test_bad_policy_or_budget_is_one_line_before_any_scoring(
  root, tmp_path, capsys, monkeypatch, extra, message
):
  import exfiqa_jax.scoring.score as scoring

  def never(*a, **k):
    raise AssertionError("scored")

  monkeypatch.setattr(scoring, "score", never)
  save(_sweep(), str(root / "ckpt" / "policies.json"), cost_gflops=list(COST))
  (tmp_path / "BAD").write_text("{}")
  save(Policy("delta", 0.5, (6, 12), 12, dict(scale=1.0), gflops=0.1), str(tmp_path / "DEEP"))
  extra = [str(tmp_path / a) if a in ("NOFILE", "BAD", "DEEP") else a for a in extra]
  out = tmp_path / "o.npz"
  code, io = _cli(_score(root, out, *extra), capsys)
  assert code == 2 and not out.exists()
  line = _error_line(io.err)
  assert re.search(message, line), line
