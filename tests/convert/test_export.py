"""`exfiqa export`: an orbax checkpoint back to the released PyTorch layout, exactly."""

import os

import numpy as np
import pytest

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax import ViTConfig
from exfiqa_jax.cli import main
from exfiqa_jax.convert import convert_file, export_file
from exfiqa_jax.convert.references.vit_fiqa import ViTFIQAReference
from tests.helpers import reference

CFG = ViTConfig(image_size=40, patch_size=9, width=48, depth=3, num_heads=6, mlp_dim=80)


def test_torch_to_orbax_to_torch_file(tmp_path, capsys):
  ref, x, emb, exits = reference(CFG, seed=9, batch=2)
  sd = ref.state_dict()
  torch.save(sd, tmp_path / "model.pt")
  convert_file(str(tmp_path / "model.pt"), str(tmp_path / "ckpt"), num_heads=6)
  assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "back.pt")]) == 0
  assert "wrote" in capsys.readouterr().out
  back = torch.load(tmp_path / "back.pt", weights_only=True)
  assert set(back) == set(sd)
  for key, value in sd.items():
    if key != "mask_token" and not key.endswith("num_batches_tracked"):
      assert back[key].dtype == torch.float32 and torch.equal(back[key], value), key
  model = ViTFIQAReference(**CFG.to_dict()).eval()
  model.load_state_dict(back)  # strict: the released layout, complete
  with torch.no_grad():
    got_emb, got_exits = model(torch.from_numpy(x).permute(0, 3, 1, 2))
  np.testing.assert_array_equal(got_emb.numpy(), emb)
  np.testing.assert_array_equal(got_exits.numpy(), exits)


def test_export_refusals(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"nope: no such checkpoint folder"):
    export_file(str(tmp_path / "nope"), str(tmp_path / "out.pt"))
  (tmp_path / "out.pt").write_text("keep")
  with pytest.raises(FileExistsError, match=r"out\.pt exists; pass --force"):
    export_file(str(tmp_path / "nope"), str(tmp_path / "out.pt"))
  assert (tmp_path / "out.pt").read_text() == "keep"
  assert sorted(os.listdir(tmp_path)) == ["out.pt"]
