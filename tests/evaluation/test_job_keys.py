"""A job config's top-level keys: a typo is refused in one line before any work (issue 26)."""

import subprocess
import sys

import pytest

from exfiqa_jax.configs import load_config_file
from exfiqa_jax.evaluation.job_config import JOB_KEYS, check_job_keys

JOB = """
def get_config():
  return dict(
    checkpoint="nowhere/ckpt", out_dir="{out}", data_dir="nowhere/tfds",
    datasets=dict(x=dict(builder="verification_bin", files="nowhere")),
    fr_models=["self"],
    {extra}
  )
"""


def _refused(job) -> list[str]:
  """`exfiqa evaluate --config job --quiet` as a process: exit 2, the stderr lines."""
  run = subprocess.run(
    [sys.executable, "-m", "exfiqa_jax.cli", "evaluate", "--config", str(job), "--quiet"],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert run.returncode == 2, run.stderr
  return run.stderr.strip().splitlines()


@pytest.mark.parametrize(
  "extra,key,hint",
  [
    ("adaptiv=dict(policies=('cascade',)),", "adaptiv", "adaptive"),
    ("weigths=dict(simplex=8),", "weigths", "weights"),
    ("reprot=dict(exits=(3,)),", "reprot", "report"),
    ("scoring_x=1,", "scoring_x", "scoring"),
  ],
)
def test_top_level_typo_is_refused_before_any_work(tmp_path, extra, key, hint):
  job = tmp_path / "job.py"
  job.write_text(JOB.format(out=tmp_path / "out", extra=extra))
  lines = _refused(job)
  assert len(lines) == 1, lines
  # refused on the key itself, before the missing checkpoint and files are looked at
  assert f"{job}: unknown key {key!r} in the config (did you mean {hint!r}?); known: " in lines[0]
  assert all(k in lines[0] for k in ("'adaptive'", "'report'", "'weights'", "'datasets'"))
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["demo", "lfw", "paper"])
def test_shipped_job_configs_use_known_keys(name):
  cfg = load_config_file(name)
  check_job_keys(cfg, name)
  assert set(cfg) <= set(JOB_KEYS)


def _job(tmp_path, extra):
  from exfiqa_jax import save
  from tests.score_helpers import TINY, random_variables

  save(str(tmp_path / "ckpt"), TINY, *random_variables(TINY)[1:])  # depth 3
  (tmp_path / "files").mkdir()
  (tmp_path / "files" / "x.bin").write_bytes(b"")
  job = tmp_path / "job.py"
  job.write_text(
    "def get_config():\n  return dict(\n"
    f"    checkpoint={str(tmp_path / 'ckpt')!r}, out_dir={str(tmp_path / 'out')!r},\n"
    f"    data_dir={str(tmp_path / 'tfds')!r}, fr_models=['self'],\n"
    f"    datasets=dict(x=dict(builder='verification_bin', files={str(tmp_path / 'files')!r})),\n"
    f"    {extra}\n  )\n"
  )
  return job


@pytest.mark.parametrize(
  "extra,message",
  [
    (
      "report=dict(exits=(3, 66)),",
      "report.exits [66] are not exits of the depth-3 model in the checkpoint (1..3)",
    ),
    ("report=dict(exits='3'),", "report.exits must be a list of exits (1-based)"),
    ("report=dict(exit=(3,)),", "unknown option report.exit"),
    (
      "adaptive=dict(stages=(2, 5)),",
      "adaptive.stages must increase within 1..3 and end at the depth 3, got [2, 5]",
    ),
  ],
)
def test_report_and_adaptive_values_are_refused_before_any_scoring(tmp_path, extra, message):
  job = _job(tmp_path, extra)
  lines = _refused(job)
  assert len(lines) == 1 and f"{job}: " in lines[0] and message in lines[0], lines
  assert not (tmp_path / "out").exists() and not (tmp_path / "tfds").exists()


def test_paper_names_every_missing_input_at_once(tmp_path):
  run = subprocess.run(
    [sys.executable, "-m", "exfiqa_jax.cli", "evaluate", "--config", "paper", "--quiet"],
    capture_output=True,
    text=True,
    timeout=120,
    cwd=tmp_path,
  )
  assert run.returncode == 2
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1, lines
  # 13, and the two CR-FIQA checkpoints of quality_methods (GraFIQs' is ArcFace's, named once)
  assert "paper: 15 inputs are missing: checkpoint weights/vit_fiqa does not exist" in lines[0]
  assert "quality_methods.CR-FIQA(L).checkpoint weights/crfiqa_l does not exist" in lines[0]
  for name in ("lfw", "agedb_30", "cfp_fp", "calfw", "cplfw"):
    assert f"datasets.{name} needs data/bins/{name}.bin" in lines[0]
  assert "datasets.xqlfw needs data/quality_data/XQLFW/pair_list.txt" in lines[0]
  assert "datasets.ijbc needs data/IJBC" in lines[0]
  for fr in ("ArcFace", "ElasticFace", "MagFace", "CurricularFace"):
    assert f"fr_models.{fr}.checkpoint weights/" in lines[0]
  assert not (tmp_path / "out").exists()


def test_sweep_of_a_config_needs_only_its_saved_inputs(tmp_path):
  import numpy as np

  from exfiqa_jax.metrics.inputs import PairInputs

  job = tmp_path / "job.py"
  job.write_text(JOB.format(out=tmp_path / "out", extra="weights=dict(simplex=2, learn_steps=2),"))
  argv = [sys.executable, "-m", "exfiqa_jax.cli", "sweep", "--config", str(job), "--quiet"]
  run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
  assert run.returncode == 2
  want = f"{job}: saved inputs missing (run `exfiqa evaluate --config {job}` first): "
  assert want + str(tmp_path / "out" / "inputs" / "x_self.npz") in run.stderr
  rng = np.random.default_rng(0)
  n = 200
  a, b = np.arange(0, n, 2), np.arange(1, n, 2)
  labels = np.arange(n // 2) % 2 == 0
  z = PairInputs(
    rng.normal(size=(n, 3)).astype(np.float32), a, b, labels,
    labels + rng.normal(size=n // 2), np.array([1.0, 2.0, 3.0]),
  )  # fmt: skip
  z.save(str(tmp_path / "out" / "inputs" / "x_self.npz"))
  run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
  assert run.returncode == 0, run.stderr  # no checkpoint, no raw .bin: not needed
  assert (tmp_path / "out" / "sweep" / "x_self_subsets.csv").is_file()
