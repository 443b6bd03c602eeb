"""Policy files carry what they depend on (issue 27): `score --policy` refuses a policy
calibrated on other weights or costed for another model; a policy file's knobs, GFLOPs
and gate spreads are checked when it loads; comparison scores beyond float32 refused."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import exfiqa_jax
from exfiqa_jax.adaptive import policy as P
from exfiqa_jax.models.checkpoint import load
from exfiqa_jax.models.flops import exit_gflops
from exfiqa_jax.scoring.run_folder import weights_sha256
from tests.score_helpers import TINY, faces, random_variables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXE = [sys.executable, "-m", "exfiqa_jax.cli"]
ENV = {**os.environ, "PYTHONPATH": ROOT, "JAX_COMPILATION_CACHE_DIR": ""}
COST = [float(g) for g in exit_gflops(TINY)]
DELTA = [P.Policy("delta", k, (1, 2, 3), 3, {"scale": 1.0}, gflops=COST[-1]) for k in (0.0, 0.5)]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp("policy")
  exfiqa_jax.save(str(root / "ckpt"), TINY, *random_variables(seed=7)[1:])
  (root / "imgs").mkdir()
  for i, x in enumerate(faces(2, 5)):
    Image.fromarray(x).save(root / "imgs" / f"f{i}.png")
  return root


def _score(root, policy_file, out):
  args = ["score", "--checkpoint", root / "ckpt", "--images", root / "imgs", "--out", out]
  args += ["--quiet", "--policy", "delta", "--budget", str(COST[-1]), "--policy-file", policy_file]
  return subprocess.run(
    [*EXE, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=600
  )


def test_score_refuses_a_policy_of_other_costs_or_weights(root, tmp_path):
  mine = weights_sha256(load(str(root / "ckpt"))[2:])
  vit_s = [0.99 * (k + 1) for k in range(3)]  # costed for another model
  cases = [
    (dict(cost_gflops=vit_s, weights_sha256=mine), "calibrated on exit costs"),
    (dict(cost_gflops=COST, weights_sha256="0" * 64), "calibrated on other weights"),
    (dict(weights_sha256=mine), "states no exit costs"),
  ]
  for i, (meta, message) in enumerate(cases):
    P.save(DELTA, str(tmp_path / f"p{i}.json"), **meta)
    r = _score(root, tmp_path / f"p{i}.json", tmp_path / f"s{i}.npz")
    assert r.returncode == 2 and message in r.stderr, r.stderr[-3000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / f"s{i}.npz").exists()
  P.save(DELTA, str(tmp_path / "ok.json"), cost_gflops=COST, weights_sha256=mine)
  r = _score(root, tmp_path / "ok.json", tmp_path / "ok.npz")
  assert r.returncode == 0, r.stderr[-3000:]
  meta = json.loads(str(np.load(tmp_path / "ok.npz")["policy"]))
  assert meta["name"] == "delta" and meta["calibrated_gflops"] == pytest.approx(COST[-1])


def test_adaptive_stores_the_checkpoint_weights_and_costs(root, tmp_path):
  rng = np.random.default_rng(0)
  n, pairs = 400, 200
  exits = (rng.normal(size=(n, 1)) + 0.3 * rng.normal(size=(n, 3))).astype(np.float32)
  labels = np.arange(pairs) % 2 == 0
  z = dict(exit_scores=exits, a=np.arange(0, n, 2), b=np.arange(1, n, 2), labels=labels)
  z |= dict(comparison=np.where(labels, 0.6, 0.0) + 0.3 * rng.normal(size=pairs))
  np.savez(tmp_path / "x.npz", **z, cost=np.array([1.0, 2.0, 3.0]))
  args = ["adaptive", "--quiet", "--inputs", tmp_path / "x.npz", "--out", tmp_path / "o"]
  args += ["--checkpoint", root / "ckpt", "--policies", "delta"]
  r = subprocess.run([*EXE, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=600)
  assert r.returncode == 2 and "its exit costs differ from those of" in r.stderr, r.stderr
  np.savez(tmp_path / "x.npz", **z, cost=np.array(COST))
  r = subprocess.run([*EXE, *map(str, args)], env=ENV, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  doc = json.loads((root / "ckpt" / "policies.json").read_text())
  assert doc["weights_sha256"] == weights_sha256(load(str(root / "ckpt"))[2:])
  assert doc["cost_gflops"] == pytest.approx(COST, rel=1e-12)
  os.remove(root / "ckpt" / "policies.json")


@pytest.mark.parametrize(
  "policy,message",
  [
    (P.Policy("delta", -0.5, (1, 2, 3), 3, {"scale": 1.0}, 1.0), r"knob -0.5 outside \[0.0, inf\]"),
    (P.Policy("band", 0.7, (1, 2, 3), 3, {"lo": [None] * 3, "hi": [None] * 3}, 1.0), "outside"),
    (P.Policy("gate", 1.5, (1, 2, 3), 3, {}, 1.0), r"knob 1.5 outside \[0.0, 1.0\]"),
    (P.Policy("delta", 0.5, (1, 2, 3), 3, {"scale": 1.0}, -2.0), "gflops must be positive"),
    (
      P.Policy("gate", 0.5, (1, 3), 3,
               {"mean": [[0.0] * 5] * 2, "std": [[1.0] * 5, [1.0, 0, 1, 1, 1]],
                "w": [[0.0] * 5] * 2, "b": [0.0] * 2}, 1.0),
      r"\(std > 0\)",
    ),
  ],
)  # fmt: skip
def test_policy_file_values_checked_when_it_loads(tmp_path, policy, message):
  P.save(policy, str(tmp_path / "p.json"))
  with pytest.raises(ValueError, match=r"p\.json: policy 0 is malformed: .*" + message):
    P.load_sweep(str(tmp_path / "p.json"))


def test_comparison_scores_beyond_float32_refused(tmp_path):
  from exfiqa_jax.metrics.inputs import PairInputs

  np.savez(tmp_path / "s.npz", paths=np.array(["a", "b"]), exit_scores=np.ones((2, 3), np.float32))
  (tmp_path / "p.txt").write_text("a b 1 0.5\na b 0 1e39\n")
  with pytest.raises(ValueError, match=r"p\.txt:2: comparison score '1e39' is beyond float32"):
    PairInputs.from_score_file(str(tmp_path / "s.npz"), str(tmp_path / "p.txt"), np.ones(3))
  z = dict(exit_scores=np.ones((4, 3), np.float32), a=np.array([0, 2]), b=np.array([1, 3]))
  z |= dict(labels=np.array([True, False]), comparison=np.array([0.5, -4e38]))
  np.savez(tmp_path / "x.npz", **z, cost=np.arange(1, 4.0))
  with pytest.raises(ValueError, match=r"x\.npz: comparison scores beyond float32 \(4e\+38\)"):
    PairInputs.load(str(tmp_path / "x.npz"))
