"""A ViT-FIQA head count is never guessed (issue 26): the weights cannot tell it, so it is
given (`--num-heads`), read from `SRC.json`, or the conversion is refused in one line."""

import json
import subprocess
import sys

import numpy as np

from tests.helpers import import_torch

torch = import_torch()

import exfiqa_jax  # noqa: E402
from exfiqa_jax import ViTConfig, apply, preprocess  # noqa: E402
from exfiqa_jax.convert.demo import write_demo_checkpoint  # noqa: E402
from exfiqa_jax.convert.references.vit_fiqa import ViTFIQAReference, randomize_  # noqa: E402

KW = dict(image_size=40, patch_size=9, width=16, depth=2, num_heads=4, mlp_dim=24)


def _convert(*args):
  return subprocess.run(
    [sys.executable, "-m", "exfiqa_jax.cli", "convert", *map(str, args)],
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_no_head_count_no_settings_file_is_refused_in_one_line(tmp_path):
  torch.save(randomize_(ViTFIQAReference(**KW), seed=3).state_dict(), tmp_path / "m.pt")
  for flags in ([], ["--verify"]):  # --verify cannot pass on a guessed count either
    run = _convert(tmp_path / "m.pt", tmp_path / "ckpt", *flags)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    head = f"{tmp_path / 'm.pt'}: the attention head count cannot be read from the weights"
    assert head in lines[0]
    assert "pass --num-heads N (8 for the released ViT-FIQA model)" in lines[0]
    assert str(tmp_path / "m.pt.json") in lines[0]
    assert not (tmp_path / "ckpt").exists()
  run = _convert(tmp_path / "m.pt", tmp_path / "ckpt", "--num-heads", "4", "--verify")
  assert run.returncode == 0, run.stderr
  assert exfiqa_jax.load(str(tmp_path / "ckpt")).config.num_heads == 4


def test_demo_writes_its_head_count_beside_its_pt(tmp_path):
  """The demo's `.pt` converts (and verifies) to the demo's own model with no flags."""
  config = ViTConfig(**KW)
  write_demo_checkpoint(config, str(tmp_path / "files"), str(tmp_path / "demo_ckpt"))
  pt = tmp_path / "files" / "vit_fiqa_demo.pt"
  info = json.loads((tmp_path / "files" / "vit_fiqa_demo.pt.json").read_text())
  assert info["config"]["num_heads"] == 4
  run = _convert(pt, tmp_path / "again", "--verify")
  assert run.returncode == 0, run.stderr
  again = exfiqa_jax.load(str(tmp_path / "again"))
  demo = exfiqa_jax.load(str(tmp_path / "demo_ckpt"))
  assert again.config == demo.config == config
  x = preprocess(np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8), 40)
  np.testing.assert_array_equal(apply(*again[1:], x).exits, apply(*demo[1:], x).exits)
