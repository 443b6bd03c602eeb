"""What README.md says `exfiqa export` keeps of a face-recognition release (issue 26: it
was called bit-exact): every weight and BatchNorm statistic bit for bit, each
`num_batches_tracked` as 0, MagFace's `epoch`, `optimizer` and classifier dropped."""

from __future__ import annotations

import numpy as np

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax.cli import main  # noqa: E402
from tests.fr_helpers import reference_state_dict, tiny  # noqa: E402


def test_magface_export_keeps_every_tensor_and_drops_the_training_entries(tmp_path):
  _, sd = reference_state_dict(tiny("magface"), seed=4)
  for k in sd:
    if k.endswith("num_batches_tracked"):
      sd[k] = torch.tensor(1234)  # a trained model's count
  release = {
    "epoch": 25,
    "arch": "iresnet100",
    "state_dict": {
      **{f"features.module.{k}": v for k, v in sd.items()},
      "parallel_fc.weight": torch.randn(7, 32),
    },
    "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
  }
  torch.save(release, tmp_path / "magface.pth")
  ckpt, back = str(tmp_path / "ckpt"), str(tmp_path / "back.pth")
  assert main(["convert", str(tmp_path / "magface.pth"), ckpt, "--family", "magface"]) == 0
  assert main(["export", ckpt, back]) == 0
  got = torch.load(back, weights_only=True)
  assert "epoch" not in got and "optimizer" not in got
  inner = got["state_dict"]
  assert "parallel_fc.weight" not in inner
  assert set(inner) == {f"features.module.{k}" for k in sd}
  for k, v in sd.items():
    g = inner[f"features.module.{k}"]
    if k.endswith("num_batches_tracked"):
      assert int(g) == 0  # written as a fresh BatchNorm holds it
    else:
      assert g.dtype == torch.float32
      np.testing.assert_array_equal(g.numpy(), v.float().numpy())  # bit for bit
