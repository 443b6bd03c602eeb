"""`exfiqa sweep --scores` and `exfiqa adaptive --scores` never assume a model's exit costs
(issue 26): they come from --checkpoint (its config, models/flops.py) or --cost, are
refused in one line without either, and the output says which were used."""

import csv
import subprocess
import sys

import numpy as np
import pytest

from exfiqa_jax import save
from exfiqa_jax.models.flops import exit_gflops
from tests.score_helpers import TINY, random_variables

DEPTH = TINY.depth


def _cli(*args):
  return subprocess.run(
    [sys.executable, "-m", "exfiqa_jax.cli", *map(str, args)],
    capture_output=True,
    text=True,
    timeout=300,
  )


def _src(tmp_path, n=200):
  rng = np.random.default_rng(0)
  true = rng.normal(size=n)
  exits = (true[:, None] + rng.normal(size=(n, DEPTH))).astype(np.float32)
  ids = np.array([f"i{k}.png" for k in range(n)])
  np.savez(tmp_path / "sc.npz", paths=ids, exit_scores=exits)
  with open(tmp_path / "pairs.txt", "w") as f:  # disjoint pairs (2k, 2k + 1)
    for k in range(n // 2):
      f.write(f"{ids[2 * k]} {ids[2 * k + 1]} {k % 2} {float(rng.normal() + k % 2)!r}\n")
  return ["--scores", tmp_path / "sc.npz", "--pairs", tmp_path / "pairs.txt", "--quiet"]


@pytest.mark.parametrize("command", ["sweep", "adaptive"])
def test_no_cost_is_refused_in_one_line(tmp_path, command):
  run = _cli(command, *_src(tmp_path), "--out", tmp_path / "o")
  assert run.returncode == 2
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1, run.stderr
  assert (
    "--scores needs the cost of each exit: --checkpoint FOLDER (GFLOPs from the model's "
    "config) or --cost G1,...,GL (GFLOPs per exit)" in lines[0]
  )
  assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("command", ["sweep", "adaptive"])
def test_costs_from_the_checkpoint_or_given_and_said(tmp_path, command):
  src = _src(tmp_path)
  save(str(tmp_path / "ckpt"), TINY, *random_variables(TINY)[1:])
  want = exit_gflops(TINY)  # not vit_s's
  run = _cli(command, *src, "--checkpoint", tmp_path / "ckpt", "--out", tmp_path / "a")
  assert run.returncode == 0, run.stderr
  said = f"exit costs (GFLOPs) from the model in --checkpoint {tmp_path / 'ckpt'}: "
  line = next(ln for ln in run.stdout.splitlines() if ln.startswith(said))
  np.testing.assert_allclose([float(x) for x in line[len(said) :].split(", ")], want, rtol=1e-3)
  given = (0.5, 1.0, 2.0)
  run = _cli(command, *src, "--cost", "0.5,1,2", "--out", tmp_path / "b")
  assert run.returncode == 0, run.stderr
  assert "exit costs (GFLOPs) as given by --cost: 0.5, 1, 2" in run.stdout
  if command == "sweep":
    with open(tmp_path / "b" / "sc_subsets.csv", newline="") as f:
      rows = {r["variant"]: r for r in csv.DictReader(f)}
    assert float(rows["exit 2"]["gflops"]) == given[1]
  run = _cli(command, *src, "--cost", "0.5,1", "--out", tmp_path / "c")
  assert run.returncode == 2 and "--cost gives 2 exit costs; " in run.stderr
  assert f"{tmp_path / 'sc.npz'} has {DEPTH} exits" in run.stderr
