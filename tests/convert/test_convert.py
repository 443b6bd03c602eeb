"""Converting checkpoints of every model family written by its independent reference
model: each release wrapper, the verify table, the stored config, bit-exact round trips
through `exfiqa convert` / `exfiqa export` (parametrised over `FAMILIES`); ViT-FIQA's
fp16, config inference and settings; `exfiqa embed` (refusals: test_convert_refusals.py)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.helpers import import_torch

torch = import_torch()

import exfiqa_jax
from exfiqa_jax import ViTConfig, abstract_variables, apply
from exfiqa_jax.cli import main
from exfiqa_jax.convert import FAMILIES, default_image_size, from_torch, to_torch
from exfiqa_jax.convert.files import convert_file
from exfiqa_jax.convert.mapping import BLOCK
from exfiqa_jax.convert.safe_load import load_torch
from exfiqa_jax.data import FileSource
from exfiqa_jax.models.checkpoint import load
from exfiqa_jax.models.registry import fr_input, kind_of
from exfiqa_jax.scoring.score import FRModel, score
from tests.fr_helpers import reference_embedding, reference_state_dict, tiny
from tests.helpers import reference
from tests.score_helpers import faces

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


def _magface_training(sd, prefix, head):
  return {
    "epoch": 25,
    "arch": "iresnet100",
    "state_dict": {**{prefix + k: v for k, v in sd.items()}, head: torch.randn(7, 32)},
    "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
  }


def _vit_backbone(sd):
  return {
    "state_dict_backbone": sd,
    "epoch": 7,
    "state_dict_softmax_fc": {"weight": torch.ones(9, 48)},
  }


WRAPPERS = {  # case -> (family, wrapper of the reference state_dict)
  "vit_fiqa plain": ("vit_fiqa", lambda sd: sd),
  "vit_fiqa module.": ("vit_fiqa", lambda sd: {f"module.{k}": v for k, v in sd.items()}),
  "vit_fiqa backbone": ("vit_fiqa", _vit_backbone),
  "vit_fiqa backbone module.": (
    "vit_fiqa",
    lambda sd: _vit_backbone({f"module.{k}": v for k, v in sd.items()}),
  ),
  "vit_fiqa numpy": ("vit_fiqa", lambda sd: {k: v.numpy() for k, v in sd.items()}),
  "arcface plain": ("arcface", lambda sd: sd),
  "elasticface module.": ("elasticface", lambda sd: {f"module.{k}": v for k, v in sd.items()}),
  "magface features.module.": (
    "magface",
    lambda sd: _magface_training(sd, "features.module.", "parallel_fc.weight"),
  ),
  "magface module.features.": (
    "magface",
    lambda sd: _magface_training(sd, "module.features.", "module.fc.weight"),
  ),
  "curricularface plain": ("curricularface", lambda sd: sd),
  # Its release files are MXNet ones (test_mxnet_*.py); this is its export layout.
  "arcface-mxnet exported": ("arcface-mxnet", lambda sd: sd),
  # CR-FIQA's `<id>backbone.pth`: the iResNet with its quality head `qs`.
  "cr-fiqa module.": ("cr-fiqa", lambda sd: {f"module.{k}": v for k, v in sd.items()}),
}
OPTIONS = {"vit_fiqa": ["--num-heads", "6"]}  # what the shapes cannot tell
KWARGS = {"vit_fiqa": {"num_heads": 6}}
# Measured on this CPU at float32: ViT-FIQA max |diff| ~1e-6; face recognition 3-7e-6
# on embeddings of max |e| 3-7.
TOLERANCE = {"vit_fiqa": 1e-5}


def _config(family: str):
  return SMALL if family == "vit_fiqa" else tiny(family)


def test_every_family_has_a_wrapper_case_and_a_cli_choice():
  from exfiqa_jax.cli.convert import FAMILY_NAMES

  assert {family for family, _ in WRAPPERS.values()} == set(FAMILIES) == set(FAMILY_NAMES)


def test_detect_tells_the_architecture_of_every_family():
  iresnet = {"arcface", "elasticface", "magface", "arcface-mxnet"}
  want = {"vit_fiqa": {"vit_fiqa"}, "curricularface": {"curricularface"}} | dict.fromkeys(
    iresnet, iresnet
  )
  want["cr-fiqa"] = {*iresnet, "cr-fiqa"}  # an iResNet too; only it has the `qs` head
  for name, f in FAMILIES.items():
    sd = f.randomize(f.reference(_config(name)), 0).state_dict()
    assert {n for n, g in FAMILIES.items() if g.detect(sd)} == want[name], name
  assert not any(
    f.detect(torch.zeros(3)) or f.detect({"x": torch.zeros(1)}) for f in FAMILIES.values()
  )


@pytest.mark.parametrize("case", list(WRAPPERS))
def test_each_wrapper_converts_and_round_trips_bit_exactly(tmp_path, case, capsys):
  """In memory and file to file: the family's reference and the converted model agree
  on every output; `exfiqa export` gives back the source's arrays bit for bit."""
  family, wrap = WRAPPERS[case]
  f, config = FAMILIES[family], _config(family)
  ref = f.randomize(f.reference(config), 4)
  sd = ref.state_dict()
  got, params, batch_stats = from_torch(wrap(sd), family=family, **KWARGS.get(family, {}))
  assert got == config
  x = f.test_inputs(config)
  with torch.no_grad():
    want = f.reference_outputs(ref, torch.from_numpy(x).permute(0, 3, 1, 2))
  have = f.outputs(apply(abstract_variables(config)[0], params, batch_stats, jnp.asarray(x)))
  outputs = 1 + config.depth if family == "vit_fiqa" else 2 if f.quality else 1
  assert list(have) == list(want) and len(want) == outputs
  tol = TOLERANCE.get(family, 2e-4)
  for name in want:
    np.testing.assert_allclose(have[name], want[name], atol=tol, rtol=tol, err_msg=name)
  if case == "vit_fiqa numpy":  # arrays, not tensors: no torch.save file of them
    return
  torch.save(wrap(sd), tmp_path / "src.pt")
  argv = ["convert", str(tmp_path / "src.pt"), str(tmp_path / "ckpt"), "--family", family]
  assert main([*argv, *OPTIONS.get(family, []), "--verify"]) == 0
  out = capsys.readouterr().out
  assert "| embedding |" in out and "wrote" in out
  assert all(f"| {name} |" in out for name in want)
  got = load(str(tmp_path / "ckpt"))
  assert got.config == config  # sizes from the shapes; eps etc. from the family
  imgs = faces(3, 5)[:, : config.image_size, : config.image_size]
  if family != "vit_fiqa":
    x = np.asarray(fr_input(imgs, "rgb", config))
    out = kind_of(config).outputs(apply(*got[1:], x))["embeddings"]
    np.testing.assert_allclose(out, reference_embedding(ref, x), atol=2e-4, rtol=2e-4)
  assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "back.pt")]) == 0
  back = load_torch(str(tmp_path / "back.pt"))
  if family == "magface":  # the training dict, without classifier and optimizer
    assert back["arch"] == config.name and set(back) == {"arch", "state_dict"}
    back = {k.removeprefix("features.module."): v for k, v in back["state_dict"].items()}
  assert set(back) == set(sd)
  for k, v in sd.items():
    if k in f.ignored(config):  # not in the Flax model: written back as zeros
      assert torch.equal(back[k], torch.zeros_like(v)), k
    else:
      assert back[k].dtype == torch.float32 and torch.equal(back[k], v), k
  convert_file(str(tmp_path / "back.pt"), str(tmp_path / "again"), family=family)
  again = load(str(tmp_path / "again"))
  assert again.config == config  # ViT-FIQA: its settings from back.pt.json
  for a, b in zip(jax.tree.leaves(got[2:]), jax.tree.leaves(again[2:]), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


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


def test_embed_matches_the_model_and_the_scoring_pass(tmp_path, capsys):
  config = tiny("magface")
  ref, sd = reference_state_dict(config, seed=9)
  torch.save(_magface_training(sd, "features.module.", "parallel_fc.weight"), tmp_path / "m.pt")
  convert_file(str(tmp_path / "m.pt"), str(tmp_path / "ckpt"), family="magface")
  (tmp_path / "imgs").mkdir()
  imgs = faces(5, 3)
  for i, x in enumerate(imgs):
    Image.fromarray(x).save(tmp_path / "imgs" / f"f{i}.png")
  out = tmp_path / "emb.npz"
  argv = ["embed", "--checkpoint", str(tmp_path / "ckpt"), "--images", str(tmp_path / "imgs")]
  assert main([*argv, "--out", str(out), "--flip", "--batch-size", "2", "--quiet"]) == 0
  assert "5 images, 32-d" in capsys.readouterr().out
  z = np.load(out)
  assert sorted(z.files) == ["embeddings", "embeddings_flip", "paths"]
  assert z["paths"].tolist() == [f"f{i}.png" for i in range(5)]
  assert z["embeddings"].dtype == np.float32 and z["embeddings"].shape == (5, 32)
  x = np.asarray(fr_input(imgs, "rgb", config))  # files are RGB; MagFace takes BGR
  np.testing.assert_allclose(z["embeddings"], reference_embedding(ref, x), atol=2e-4, rtol=2e-4)
  np.testing.assert_allclose(
    z["embeddings_flip"], reference_embedding(ref, x[:, :, ::-1].copy()), atol=2e-4, rtol=2e-4
  )
  ckpt = load(str(tmp_path / "ckpt"))
  paths = [str(tmp_path / "imgs" / f"f{i}.png") for i in range(5)]
  source = FileSource(paths, np.asarray([os.path.basename(p) for p in paths]))
  s = score(None, source, fr_models=[FRModel("m", ckpt.config, ckpt[1:])], batch_size=2)
  np.testing.assert_array_equal(s.fr["m"]["embeddings"], z["embeddings"])  # flip changes none
  assert s.exit_scores is None and "embeddings_flip" not in s.fr["m"]
  # The checkpoint of the other kind is refused by each command.
  argv = ["score", "--checkpoint", str(tmp_path / "ckpt"), "--images", str(tmp_path / "imgs")]
  assert main([*argv, "--out", str(tmp_path / "s.npz")]) == 2
  assert "holds a face-recognition backbone, not a ViT-FIQA model" in capsys.readouterr().err
  assert not (tmp_path / "s.npz").exists()
