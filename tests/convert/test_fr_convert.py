"""`exfiqa convert --family` and `exfiqa export` of face-recognition backbones: each release
wrapper, the verify table, the stored config, bit-exact round trips, `exfiqa embed`."""

import os

import jax
import numpy as np
import pytest
from PIL import Image

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax.cli import main
from exfiqa_jax.convert.files import convert_file
from exfiqa_jax.convert.safe_load import load_torch
from exfiqa_jax.data import FileSource
from exfiqa_jax.models.checkpoint import load
from exfiqa_jax.models.inference import apply
from exfiqa_jax.models.registry import fr_input
from exfiqa_jax.scoring.score import FRModel, score
from tests.fr_helpers import reference_embedding, reference_state_dict, tiny
from tests.score_helpers import faces


def _magface_training(sd, prefix, head):
  return {
    "epoch": 25,
    "arch": "iresnet100",
    "state_dict": {**{prefix + k: v for k, v in sd.items()}, head: torch.randn(7, 32)},
    "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
  }


WRAPPERS = {
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
}


@pytest.mark.parametrize("case", list(WRAPPERS))
def test_each_wrapper_converts_and_round_trips_bit_exactly(tmp_path, case, capsys):
  family, wrap = WRAPPERS[case]
  config = tiny(family)
  ref, sd = reference_state_dict(config, seed=7)
  torch.save(wrap(sd), tmp_path / "src.pt")
  argv = ["convert", str(tmp_path / "src.pt"), str(tmp_path / "ckpt"), "--family", family]
  assert main([*argv, "--verify"]) == 0
  out = capsys.readouterr().out
  assert "| embedding |" in out and "wrote" in out
  got = load(str(tmp_path / "ckpt"))
  assert got.config == config  # depth, widths, image size from the shapes; eps etc. from family
  imgs = faces(3, 5)
  x = np.asarray(fr_input(imgs, "rgb", config))
  np.testing.assert_allclose(apply(*got[1:], x), reference_embedding(ref, x), atol=2e-4, rtol=2e-4)
  assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "back.pt")]) == 0
  back = load_torch(str(tmp_path / "back.pt"))
  if family == "magface":  # the training dict, without classifier and optimizer
    assert back["arch"] == config.name and set(back) == {"arch", "state_dict"}
    back = {k.removeprefix("features.module."): v for k, v in back["state_dict"].items()}
  assert set(back) == set(sd)
  for k, v in sd.items():
    if k.endswith("num_batches_tracked"):
      assert int(back[k]) == 0
    else:
      assert back[k].dtype == torch.float32 and torch.equal(back[k], v), k
  convert_file(str(tmp_path / "back.pt"), str(tmp_path / "again"), family=family)
  again = load(str(tmp_path / "again"))
  for a, b in zip(jax.tree.leaves(got[2:]), jax.tree.leaves(again[2:]), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


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
