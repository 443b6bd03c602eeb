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
  run = subprocess.run(
    [sys.executable, "-m", "exfiqa_jax.cli", "evaluate", "--config", str(job), "--quiet"],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert run.returncode == 2
  lines = run.stderr.strip().splitlines()
  assert len(lines) == 1, run.stderr
  # refused on the key itself, before the missing checkpoint and files are looked at
  assert f"{job}: unknown key {key!r} in the config (did you mean {hint!r}?); known: " in lines[0]
  assert all(k in lines[0] for k in ("'adaptive'", "'report'", "'weights'", "'datasets'"))
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["demo", "lfw", "paper"])
def test_shipped_job_configs_use_known_keys(name):
  cfg = load_config_file(name)
  check_job_keys(cfg, name)
  assert set(cfg) <= set(JOB_KEYS)
