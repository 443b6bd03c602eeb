"""Every refusal of `exfiqa convert --family`: its message, and no output left behind."""

import os
import pickle

import pytest

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax.cli import main
from exfiqa_jax.convert import convert_file
from exfiqa_jax.convert.references.vit_fiqa import ViTFIQAReference, randomize_
from tests.fr_helpers import reference_state_dict, tiny


@pytest.fixture(scope="module")
def iresnet():
  return reference_state_dict(tiny("arcface"), seed=2)[1]


def _refused(tmp_path, obj, match, family="arcface", raw=None, error=ValueError):
  src = tmp_path / "src.pt"
  src.write_bytes(raw) if raw is not None else torch.save(obj, src)
  with pytest.raises(error, match=match):
    convert_file(str(src), str(tmp_path / "dst"), family=family, check=True)
  assert sorted(os.listdir(tmp_path)) == ["src.pt"]  # no DST, no temporary sibling


def test_missing_key(tmp_path, iresnet):
  sd = {k: v for k, v in iresnet.items() if k != "layer2.1.prelu.weight"}
  _refused(
    tmp_path, sd, r"src\.pt: missing key 'layer2\.1\.prelu\.weight' \(expected shape \(16,\)\)"
  )


def test_wrong_shape_names_key_and_both_shapes(tmp_path, iresnet):
  sd = {**iresnet, "layer3.0.conv2.weight": torch.zeros(24, 24, 1, 1)}
  _refused(
    tmp_path,
    sd,
    r"key 'layer3\.0\.conv2\.weight' has shape \(24, 24, 1, 1\), expected \(24, 24, 3, 3\)",
  )
  sd = {**iresnet, "fc.weight": torch.zeros(32, 1000)}
  _refused(tmp_path, sd, r"'fc\.weight' has shape \(32, 1000\): its 1000 inputs are not a square")


def test_unexpected_key_and_se_blocks(tmp_path, iresnet):
  sd = {**iresnet, "layer1.0.se_block.fc1.weight": torch.zeros(1, 8, 1, 1)}
  _refused(
    tmp_path, sd, r"unexpected key 'layer1\.0\.se_block\.fc1\.weight' of shape \(1, 8, 1, 1\)"
  )


def test_vit_fiqa_file_given_a_family(tmp_path):
  vit = randomize_(ViTFIQAReference(image_size=40, width=48, depth=2, num_heads=6, mlp_dim=80))
  _refused(
    tmp_path,
    vit.state_dict(),
    r"--family arcface needs an insightface iResNet .*; found a ViT-FIQA backbone "
    r"\('qs_token', 'blocks\.N'\); convert it without --family",
  )


def test_wrong_family_for_the_architecture(tmp_path, iresnet):
  _refused(
    tmp_path,
    iresnet,
    r"--family curricularface needs CurricularFace's IR backbone .*; found an insightface "
    r"iResNet .*\(--family arcface or elasticface or magface\)",
    family="curricularface",
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
  )
  _refused(
    tmp_path,
    {"state_dict": {**inner, "head.weight": torch.zeros(3, 32)}},
    r"unexpected key 'head\.weight' beside the backbone \('features\.module\.\*'\) and the "
    r"classifier \('parallel_fc\.weight'\)",
    family="magface",
  )
  _refused(
    tmp_path, [iresnet], r"src\.pt: holds a list, not a MagFace checkpoint", family="magface"
  )


class _WritesMarker:
  path = ""

  def __reduce__(self):
    return open, (self.path, "w")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_code_pickle_and_truncated_file(tmp_path, iresnet):
  marker = tmp_path.parent / f"{tmp_path.name}-MARKER"
  evil = _WritesMarker()
  evil.path = str(marker)
  _refused(
    tmp_path,
    None,
    r"src\.pt: refused: the file cannot be loaded weights-only",
    raw=pickle.dumps({"state_dict": evil}, protocol=2),
    family="magface",
  )
  assert not marker.exists()
  torch.save(iresnet, tmp_path / "full.pt")
  data = (tmp_path / "full.pt").read_bytes()
  os.remove(tmp_path / "full.pt")
  _refused(
    tmp_path,
    None,
    r"src\.pt: not a readable PyTorch checkpoint, the file is truncated",
    raw=data[: len(data) // 2],
  )
