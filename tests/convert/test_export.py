"""`exfiqa export`: an orbax checkpoint back to the released PyTorch layout, exactly."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax import ViTConfig
from exfiqa_jax.cli import main
from exfiqa_jax.convert import FAMILIES, convert_file, export_file
from exfiqa_jax.convert.core import variables
from exfiqa_jax.convert.references.vit_fiqa import ViTFIQAReference
from exfiqa_jax.models.checkpoint import load, save
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


def _family_configs(family: str):
  """(a small release config of `family`, the same with values its weights cannot tell
  that differ from the release's defaults): ViT-FIQA's 6 heads (8 by default); a
  face-recognition eps of 1e-3 (the releases: 1e-5 or 2e-5), as an MXNet graph may state."""
  from tests.fr_helpers import tiny

  if family == "vit_fiqa":
    return CFG, CFG
  return tiny(family), dataclasses.replace(tiny(family), bn_eps=1e-3)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_export_then_convert_round_trips_every_family(tmp_path, capsys, family):
  """The config stored in DST.json wins over the family's defaults: export -> convert gives
  back the same config and bit-identical variables, with no --family or the same one; a
  disagreeing --family is refused in one line naming the file, writing nothing."""
  f, (release, config) = FAMILIES[family], _family_configs(family)
  sd = f.randomize(f.reference(release), 3).state_dict()  # the weights: eps-free
  params, batch_stats = variables(f, {k: v.numpy() for k, v in sd.items()}, config)
  save(str(tmp_path / "ckpt"), config, params, batch_stats)
  assert main(["export", str(tmp_path / "ckpt"), str(tmp_path / "back.pt")]) == 0
  first = load(str(tmp_path / "ckpt"))
  for i, flags in enumerate([[], ["--family", family]]):
    assert main(["convert", str(tmp_path / "back.pt"), str(tmp_path / f"again{i}"), *flags]) == 0
    again = load(str(tmp_path / f"again{i}"))
    assert again.config == config
    for a, b in zip(jax.tree.leaves(first[2:]), jax.tree.leaves(again[2:]), strict=True):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  capsys.readouterr()
  other = "arcface" if family != "arcface" else "arcface-mxnet"
  before = sorted(os.listdir(tmp_path))
  assert main(["convert", str(tmp_path / "back.pt"), str(tmp_path / "x"), "--family", other]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and err.endswith(
    f"back.pt: --family {other} disagrees with {tmp_path / 'back.pt.json'} "
    f"(family {family}, written by exfiqa export)"
  )
  assert sorted(os.listdir(tmp_path)) == before
  # Without the file the shapes and the family's release decide: not the stored eps / heads.
  os.remove(tmp_path / "back.pt.json")
  if family == "vit_fiqa":  # the head count is never guessed: refused without it (issue 26)
    with pytest.raises(ValueError, match="head count cannot be read from the weights"):
      convert_file(str(tmp_path / "back.pt"), str(tmp_path / "bare"), family=family)
    heads = {"num_heads": 2}  # given, and not the stored 6
  else:
    heads = {}
  bare = convert_file(str(tmp_path / "back.pt"), str(tmp_path / "bare"), family=family, **heads)
  assert bare != config


@pytest.mark.parametrize(
  "text,message",
  [
    ("{", r"Expecting property name"),
    ("[]", r"not of format exfiqa-export-1"),
    ('{"format": "other", "config": {}}', r"not of format exfiqa-export-1"),
    ('{"format": "exfiqa-export-1"}', r"no 'config' object"),
    ('{"format": "exfiqa-export-1", "config": {"kind": "car"}}', r"unknown model kind 'car'"),
    (
      '{"format": "exfiqa-export-1", "config": {"kind": "face_recognition", "input_scale": "x"}}',
      r"input_scale 'x' is not one of",
    ),
    (" " * (1 << 20) + "{}", r"over 1 MiB"),
  ],
)
def test_malformed_export_settings_refused(tmp_path, capsys, text, message):
  torch.save(reference(CFG, seed=9, batch=2)[0].state_dict(), tmp_path / "m.pt")
  (tmp_path / "m.pt.json").write_text(text)
  with pytest.raises(ValueError, match=r"m\.pt\.json: unreadable export settings \(" + message):
    convert_file(str(tmp_path / "m.pt"), str(tmp_path / "dst"), num_heads=6)
  assert main(["convert", str(tmp_path / "m.pt"), str(tmp_path / "dst")]) == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 1
  assert sorted(os.listdir(tmp_path)) == ["m.pt", "m.pt.json"]
