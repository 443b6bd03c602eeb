"""Converting PyTorch ViT-FIQA checkpoints (docs/protocol.md §9) written by the independent
reference model: numbers, wrappers, fp16, config inference, round trip (refusals:
test_convert_refusals.py)."""

import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import import_torch

torch = import_torch()

import exfiqa_jax
from exfiqa_jax import ViTConfig, abstract_variables, apply
from exfiqa_jax.cli import main
from exfiqa_jax.convert import default_image_size, from_torch, to_torch
from exfiqa_jax.convert.mapping import BLOCK
from tests.helpers import reference

CONFIGS = {  # the image size of each is the one the converter infers
  "heads6_mlp80": ViTConfig(
    image_size=40, patch_size=9, width=48, depth=3, num_heads=6, mlp_dim=80
  ),
  "released_grid": ViTConfig(
    image_size=112, patch_size=9, width=32, depth=2, num_heads=4, mlp_dim=96
  ),
  "depth24": ViTConfig(image_size=24, patch_size=8, width=16, depth=24, num_heads=2, mlp_dim=24),
}
SMALL = CONFIGS["heads6_mlp80"]


def _assert_matches(cfg, params, batch_stats, x, emb, exits):
  out = apply(abstract_variables(cfg)[0], params, batch_stats, jnp.asarray(x))
  np.testing.assert_allclose(out.exits, exits, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out.quality, exits[:, -1], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out.embedding, emb, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_matches_reference(name):
  cfg = CONFIGS[name]
  ref, x, emb, exits = reference(cfg, seed=2, batch=3)
  got, params, batch_stats = from_torch(ref.state_dict(), num_heads=cfg.num_heads)
  assert got == cfg
  _assert_matches(cfg, params, batch_stats, x, emb, exits)


def test_file_to_checkpoint_through_cli(tmp_path, capsys):
  ref, x, emb, exits = reference(SMALL, seed=3, batch=3)
  torch.save(ref.state_dict(), tmp_path / "model.pt")
  dst = str(tmp_path / "ckpt")
  assert main(["convert", str(tmp_path / "model.pt"), dst, "--num-heads", "6", "--verify"]) == 0
  table = capsys.readouterr().out
  assert "| embedding |" in table and "| exit 3 |" in table
  diffs = [
    float(line.split("|")[2])
    for line in table.splitlines()
    if line.startswith(("| embedding", "| exit"))
  ]
  assert len(diffs) == 4 and max(diffs) < 1e-4
  loaded = exfiqa_jax.load(dst)
  assert loaded.config == SMALL
  _assert_matches(SMALL, loaded.params, loaded.batch_stats, x, emb, exits)


@pytest.mark.parametrize("wrap", ["module", "backbone", "backbone_module", "numpy"])
def test_wrappers(wrap):
  ref, x, emb, exits = reference(SMALL, seed=4, batch=2)
  sd = ref.state_dict()
  if wrap in ("module", "backbone_module"):
    sd = {f"module.{k}": v for k, v in sd.items()}
  if wrap.startswith("backbone"):
    sd = {
      "state_dict_backbone": sd,
      "epoch": 7,
      "state_dict_softmax_fc": {"weight": torch.ones(9, 48)},
    }
  if wrap == "numpy":
    sd = {k: v.numpy() for k, v in sd.items()}
  _, params, batch_stats = from_torch(sd, num_heads=6)
  _assert_matches(SMALL, params, batch_stats, x, emb, exits)


def test_fp16_becomes_float32():
  ref, *_ = reference(SMALL, seed=5)
  half = {k: (v.half() if v.is_floating_point() else v) for k, v in ref.state_dict().items()}
  _, params, batch_stats = from_torch(half, num_heads=6)
  assert params["qs_token"][...].dtype == np.float32
  back = to_torch(SMALL, params, batch_stats)
  for key, value in half.items():
    if value.is_floating_point() and key != "mask_token":
      assert back[key].dtype == torch.float32 and torch.equal(back[key], value.float()), key


def test_round_trip_is_exact():
  ref, *_ = reference(CONFIGS["depth24"], seed=6)
  sd = ref.state_dict()
  back = to_torch(*from_torch(sd, num_heads=2))
  assert list(back) and set(back) == set(sd)
  for key, value in sd.items():
    if key == "mask_token" or key.endswith("num_batches_tracked"):  # not in the Flax model
      assert torch.equal(back[key], torch.zeros_like(value)), key
    else:
      assert back[key].dtype == value.dtype and torch.equal(back[key], value), key


@pytest.mark.parametrize(
  "grid,patch,size",
  [(12, 9, 112), (4, 9, 40), (7, 16, 112), (3, 8, 24), (27, 4, 108), (2, 3, 8), (3, 3, 9)],
)
def test_default_image_size(grid, patch, size):
  assert default_image_size(grid, patch) == size
  assert size // patch == grid


def test_image_size_override():
  ref, *_ = reference(SMALL, seed=7)
  assert from_torch(ref.state_dict(), 6, image_size=44)[0].image_size == 44
  with pytest.raises(ValueError, match=r"image size 45 gives a 5x5 grid .* holds a 4x4 grid"):
    from_torch(ref.state_dict(), 6, image_size=45)


def test_no_mask_token_is_fine():
  ref, *_ = reference(SMALL, seed=8)
  sd = {k: v for k, v in ref.state_dict().items() if k != "mask_token"}
  assert from_torch(sd, 6)[0] == SMALL


def test_python_m_convert(tmp_path):
  ref, *_ = reference(SMALL, seed=10)
  torch.save(ref.state_dict(), tmp_path / "model.pt")
  run = subprocess.run(
    [
      sys.executable,
      "-m",
      "exfiqa_jax.convert",
      str(tmp_path / "model.pt"),
      str(tmp_path / "ckpt"),
      "--num-heads",
      "6",
    ],
    capture_output=True,
    text=True,
  )
  assert run.returncode == 0, run.stderr
  assert f"wrote {tmp_path / 'ckpt'}: {SMALL.to_dict()}" in run.stdout
  assert exfiqa_jax.load(str(tmp_path / "ckpt")).config == SMALL


def test_every_flax_variable_must_be_filled(monkeypatch):
  """A table that misses a variable (and a source without its keys, so that the key
  check passes) is refused by the fill check, naming the variable and the table."""
  ref, *_ = reference(SMALL, seed=11)
  monkeypatch.setattr(
    "exfiqa_jax.convert.mapping.BLOCK", [e for e in BLOCK if e.torch != "mlp.fc2.bias"]
  )
  sd = {k: v for k, v in ref.state_dict().items() if not k.endswith("mlp.fc2.bias")}
  with pytest.raises(
    ValueError,
    match=r"Flax variables \['params/blocks/mlp/fc2/bias'\] have "
    r"no entry in convert/mapping\.py",
  ):
    from_torch(sd, 6)
