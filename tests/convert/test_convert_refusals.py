"""Every refusal of `exfiqa convert` (any family): its message, and no output left behind.
The key, shape and file checks are parametrised over the families."""

import os
import pickle
import re

import pytest

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax import ViTConfig
from exfiqa_jax.cli import main
from exfiqa_jax.convert import FAMILIES, convert_file
from exfiqa_jax.convert.references.vit_fiqa import ViTFIQAReference, randomize_
from exfiqa_jax.convert.verify import report
from tests.fr_helpers import reference_state_dict, tiny

KW = dict(image_size=40, patch_size=9, width=48, depth=3, num_heads=6, mlp_dim=80)


@pytest.fixture(scope="module")
def state_dict():
  return randomize_(ViTFIQAReference(**KW), seed=1).state_dict()


@pytest.fixture(scope="module")
def iresnet():
  return reference_state_dict(tiny("arcface"), seed=2)[1]


def _refused(
  tmp_path, obj, match, num_heads=6, error=ValueError, check=False, raw=None, family="vit_fiqa"
):
  """Saves `obj` (or writes `raw` bytes), converts it; asserts the error and no output."""
  src = tmp_path / "src.pt"
  src.write_bytes(raw) if raw is not None else torch.save(obj, src)
  with pytest.raises(error, match=match):
    convert_file(str(src), str(tmp_path / "dst"), num_heads=num_heads, check=check, family=family)
  assert sorted(os.listdir(tmp_path)) == ["src.pt"]  # no DST, no temporary sibling


def _family_state_dict(family: str) -> dict:
  """The reference state_dict of a small model of `family` (its `Family` record)."""
  f = FAMILIES[family]
  config = ViTConfig(**KW) if family == "vit_fiqa" else tiny(family)
  return f.randomize(f.reference(config), 1 if family == "vit_fiqa" else 2).state_dict()


# family -> (missing key and its shape, unexpected key and its shape,
#            misshapen key, the shape given, the shape expected)
KEY_CASES = {
  "vit_fiqa": (
    ("blocks.1.mlp.fc1.bias", (80,)),
    ("blocks.0.attn.qkv.bias", (144,)),
    ("feature.2.weight", (48, 47), (48, 48)),
  ),
  "arcface": (
    ("layer2.1.prelu.weight", (16,)),
    ("layer1.0.se_block.fc1.weight", (1, 8, 1, 1)),
    ("layer3.0.conv2.weight", (24, 24, 1, 1), (24, 24, 3, 3)),
  ),
  "elasticface": (
    ("layer1.0.bn3.running_var", (8,)),
    ("layer1.0.se_block.fc1.weight", (1, 8, 1, 1)),
    ("layer2.0.downsample.0.weight", (16, 8, 3, 3), (16, 8, 1, 1)),
  ),
  "magface": (
    ("features.bias", (32,)),
    ("fc.bias_extra", (32,)),
    ("layer4.0.conv1.weight", (32, 24, 3, 1), (32, 24, 3, 3)),
  ),
  "curricularface": (
    ("body.1.res_layer.2.weight", (16,)),
    ("body.0.shortcut_layer.0.weight", (8, 8, 1, 1)),
    ("body.2.res_layer.3.weight", (16, 16, 1, 1), (16, 16, 3, 3)),
  ),
}


def _pattern(text: str) -> str:
  return text.replace(".", r"\.").replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("family", list(KEY_CASES))
def test_missing_key(tmp_path, family):
  (key, shape), _, _ = KEY_CASES[family]
  sd = _family_state_dict(family)
  assert tuple(sd[key].shape) == shape
  sd = {k: v for k, v in sd.items() if k != key}
  _refused(
    tmp_path,
    sd,
    _pattern(f"src.pt: missing key '{key}' (expected shape {shape})"),
    family=family,
    check=family != "vit_fiqa",
  )


@pytest.mark.parametrize("family", list(KEY_CASES))
def test_extra_key(tmp_path, family):
  _, (key, shape), _ = KEY_CASES[family]
  sd = {**_family_state_dict(family), key: torch.zeros(shape)}
  _refused(
    tmp_path,
    sd,
    _pattern(f"unexpected key '{key}' of shape {shape}"),
    family=family,
    check=family != "vit_fiqa",
  )


@pytest.mark.parametrize("family", list(KEY_CASES))
def test_wrong_shape(tmp_path, family):
  _, _, (key, given, expected) = KEY_CASES[family]
  sd = _family_state_dict(family)
  assert tuple(sd[key].shape) == expected
  sd[key] = torch.zeros(given)
  _refused(
    tmp_path,
    sd,
    _pattern(f"key '{key}' has shape {given}, expected {expected}"),
    family=family,
    check=family != "vit_fiqa",
  )


def test_head_count_not_dividing_width(tmp_path, state_dict):
  _refused(tmp_path, state_dict, r"--num-heads 5 does not divide the width 48", num_heads=5)


def test_failed_verify_writes_nothing(tmp_path, state_dict, monkeypatch, capsys):
  monkeypatch.setattr("exfiqa_jax.convert.files.verify", lambda *a: {"exit 1": (0.01, 2.0)})
  _refused(
    tmp_path,
    state_dict,
    r"differs from the PyTorch reference beyond float32 rounding; "
    r"nothing written",
    check=True,
  )
  assert "| exit 1 | 0.01 | 2 |" in capsys.readouterr().out


def test_verify_tolerance_is_relative():
  assert report({"embedding": (2e-3, 10.0), "exit 1": (1e-3, 0.5)})[1]
  assert not report({"embedding": (2e-3, 1.0)})[1]


def test_resnet_refused(tmp_path):
  sd = {
    "conv1.weight": torch.zeros(64, 3, 3, 3),
    "bn1.weight": torch.ones(64),
    "layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3),
    "fc.weight": torch.zeros(512, 64),
  }
  _refused(
    tmp_path,
    sd,
    r"not a ViT-FIQA backbone .* found a classifier 'fc\.weight' of shape "
    r"\(512, 64\); convolutional layers .*ResNet-style.*\['bn1', 'conv1', 'fc', 'layer1'\]",
  )


def test_classification_vit_refused(tmp_path, state_dict):
  sd = {k: v for k, v in state_dict.items() if not k.startswith(("head_qs", "qs_token"))}
  sd.update(cls_token=torch.zeros(1, 1, 48), **{"head.weight": torch.zeros(1000, 48)})
  _refused(
    tmp_path,
    sd,
    r"not a ViT-FIQA backbone .* found a class token 'cls_token'.*"
    r"a classifier 'head\.weight' of shape \(1000, 48\)",
  )


def test_not_a_state_dict(tmp_path):
  _refused(tmp_path, torch.zeros(3), r"src\.pt: holds a Tensor, not a state_dict")
  _refused(tmp_path, {"model": {"a": 1}}, r"entries \['model'\] are not tensors")


def test_fc_inputs_not_a_square_map(tmp_path, iresnet):
  sd = {**iresnet, "fc.weight": torch.zeros(32, 1000)}
  _refused(
    tmp_path,
    sd,
    r"'fc\.weight' has shape \(32, 1000\): its 1000 inputs are not a square",
    family="arcface",
    check=True,
  )


def test_vit_fiqa_file_given_a_family(tmp_path):
  vit = randomize_(ViTFIQAReference(image_size=40, width=48, depth=2, num_heads=6, mlp_dim=80))
  _refused(
    tmp_path,
    vit.state_dict(),
    r"--family arcface needs an insightface iResNet .*; found a ViT-FIQA backbone "
    r"\('qs_token', 'blocks\.N'\); convert it without --family",
    family="arcface",
    check=True,
  )


def test_wrong_family_for_the_architecture(tmp_path, iresnet):
  _refused(
    tmp_path,
    iresnet,
    r"--family curricularface needs CurricularFace's IR backbone .*; found an insightface "
    r"iResNet .*\(--family arcface or elasticface or magface\)",
    family="curricularface",
    check=True,
  )


def test_fr_backbone_without_family_lists_the_families(tmp_path, iresnet, capsys):
  torch.save(
    {"epoch": 3, "state_dict": {f"features.module.{k}": v for k, v in iresnet.items()}},
    tmp_path / "src.pt",
  )
  assert main(["convert", str(tmp_path / "src.pt"), str(tmp_path / "dst")]) == 2
  err = capsys.readouterr().err
  assert (
    "holds an insightface iResNet" in err and "a face-recognition backbone, not ViT-FIQA" in err
  )
  assert "--family, one of arcface, elasticface, magface, curricularface" in err
  assert sorted(os.listdir(tmp_path)) == ["src.pt"]


def test_magface_wrappers_refuse_what_they_do_not_know(tmp_path, iresnet):
  inner = {f"features.module.{k}": v for k, v in iresnet.items()}
  _refused(
    tmp_path,
    {"state_dict": inner, "scheduler": {"x": 1}},
    r"MagFace checkpoint holds 'state_dict' and \['epoch', 'arch', 'optimizer'\]; found also "
    r"\['scheduler'\]",
    family="magface",
    check=True,
  )
  _refused(
    tmp_path,
    {"state_dict": {**inner, "head.weight": torch.zeros(3, 32)}},
    r"unexpected key 'head\.weight' beside the backbone \('features\.module\.\*'\) and the "
    r"classifier \('parallel_fc\.weight'\)",
    family="magface",
    check=True,
  )
  _refused(
    tmp_path,
    [iresnet],
    r"src\.pt: holds a list, not a MagFace checkpoint",
    family="magface",
    check=True,
  )


class _WritesMarker:
  path = ""

  def __reduce__(self):
    return open, (self.path, "w")  # unpickling this creates the marker file


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("how", ["torch_save", "pickle_2", "pickle_4"])
def test_code_executing_pickle_refused(tmp_path, how, family):
  marker = tmp_path.parent / f"{tmp_path.name}-MARKER"
  evil = _WritesMarker()
  evil.path = str(marker)
  raw = None if how == "torch_save" else pickle.dumps({"x": evil}, protocol=int(how[-1]))
  _refused(
    tmp_path,
    {"x": evil},
    r"src\.pt: refused: the file cannot be loaded weights-only "
    r".*can execute arbitrary code, so it was not attempted",
    raw=raw,
    family=family,
  )
  assert not marker.exists()
  _refused(  # the same inside a MagFace training checkpoint
    tmp_path,
    None,
    r"src\.pt: refused: the file cannot be loaded weights-only",
    raw=pickle.dumps({"state_dict": evil}, protocol=2),
    family=family,
  )
  assert not marker.exists()


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("cut", [0, 100, 2])
def test_truncated_file(tmp_path, cut, family):
  torch.save(_family_state_dict(family), tmp_path / "full.pt")
  data = (tmp_path / "full.pt").read_bytes()
  os.remove(tmp_path / "full.pt")
  _refused(
    tmp_path,
    None,
    r"src\.pt: not a readable PyTorch checkpoint, the file is truncated or "
    r"corrupt",
    raw=data[: len(data) // cut] if cut else b"",
    family=family,
  )


def test_existing_dst_kept_without_force(tmp_path, state_dict, capsys):
  torch.save(state_dict, tmp_path / "src.pt")
  (tmp_path / "dst").mkdir()
  (tmp_path / "dst" / "keep").write_text("old")
  assert main(["convert", str(tmp_path / "src.pt"), str(tmp_path / "dst"), "--num-heads", "6"]) == 2
  assert "exfiqa convert: error: " in capsys.readouterr().err
  with pytest.raises(FileExistsError, match=r"dst exists; pass --force to overwrite it"):
    convert_file(str(tmp_path / "src.pt"), str(tmp_path / "dst"), num_heads=6)
  assert (tmp_path / "dst" / "keep").read_text() == "old"
  # Issue 14: --force replaces only a checkpoint exfiqa wrote, never an unrelated folder.
  with pytest.raises(FileExistsError, match=r"dst exists and is not a checkpoint written by"):
    convert_file(str(tmp_path / "src.pt"), str(tmp_path / "dst"), num_heads=6, force=True)
  assert (tmp_path / "dst" / "keep").read_text() == "old"
  os.remove(tmp_path / "dst" / "keep")
  convert_file(str(tmp_path / "src.pt"), str(tmp_path / "dst"), num_heads=6, force=True)
  (tmp_path / "dst" / "extra").write_text("written into the checkpoint")
  convert_file(str(tmp_path / "src.pt"), str(tmp_path / "dst"), num_heads=6, force=True)
  assert not (tmp_path / "dst" / "extra").exists()
  assert sorted(os.listdir(tmp_path)) == ["dst", "src.pt"]


def test_missing_source(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"nope\.pt: no such file"):
    convert_file(str(tmp_path / "nope.pt"), str(tmp_path / "dst"))


@pytest.mark.parametrize(
  "key, value, match",
  [
    (
      "layer1.0.bn2.running_var",
      -1.0,
      r"negative BatchNorm running variance in \['layer1\.0\.bn2\.",
    ),
    ("fc.weight", 3e38, r"weights of magnitude up to 3e\+38 in \['fc\.weight'\], over 1e\+06"),
    ("layer2.0.conv1.weight", -2e6, r"up to 2e\+06 in \['layer2\.0\.conv1\.weight'\]"),
  ],
)
def test_weights_that_make_nan_or_overflow_are_refused(
  tmp_path, iresnet, capsys, key, value, match
):
  """Finite weights whose outputs are NaN or overflow (before: converted, then `embed` wrote
  all-NaN embeddings with exit 0): refused at conversion naming the key, nothing written."""
  sd = {k: v.clone() for k, v in iresnet.items()}
  sd[key].view(-1)[0] = value
  _refused(tmp_path, sd, match, family="arcface")
  assert (
    main(["convert", str(tmp_path / "src.pt"), str(tmp_path / "dst"), "--family", "arcface"]) == 2
  )
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and re.search(match, err[0]), err
  assert sorted(os.listdir(tmp_path)) == ["src.pt"]


def test_export_settings_with_a_negative_bn_eps_are_refused(tmp_path, iresnet):
  import json

  torch.save(iresnet, tmp_path / "src.pt")
  config = {"kind": "face_recognition", **tiny("arcface").to_dict(), "bn_eps": -1}
  (tmp_path / "src.pt.json").write_text(json.dumps({"format": "exfiqa-export-1", "config": config}))
  with pytest.raises(ValueError, match=r"src\.pt\.json: unreadable export settings \(bn_eps -1 is"):
    convert_file(str(tmp_path / "src.pt"), str(tmp_path / "dst"), family="arcface")
  assert sorted(os.listdir(tmp_path)) == ["src.pt", "src.pt.json"]
