"""Every refusal of `exfiqa convert`: its message, and no output left behind."""

import os
import pickle

import pytest

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax.cli import main
from exfiqa_jax.convert import convert_file
from exfiqa_jax.convert.references.vit_fiqa import ViTFIQAReference, randomize_
from exfiqa_jax.convert.verify import report

KW = dict(image_size=40, patch_size=9, width=48, depth=3, num_heads=6, mlp_dim=80)


@pytest.fixture(scope="module")
def state_dict():
  return randomize_(ViTFIQAReference(**KW), seed=1).state_dict()


def _refused(tmp_path, obj, match, num_heads=6, error=ValueError, check=False, raw=None):
  """Saves `obj` (or writes `raw` bytes), converts it; asserts the error and no output."""
  src = tmp_path / "src.pt"
  src.write_bytes(raw) if raw is not None else torch.save(obj, src)
  with pytest.raises(error, match=match):
    convert_file(str(src), str(tmp_path / "dst"), num_heads=num_heads, check=check)
  assert sorted(os.listdir(tmp_path)) == ["src.pt"]  # no DST, no temporary sibling


def test_missing_key(tmp_path, state_dict):
  sd = {k: v for k, v in state_dict.items() if k != "blocks.1.mlp.fc1.bias"}
  _refused(
    tmp_path, sd, r"src\.pt: missing key 'blocks\.1\.mlp\.fc1\.bias' \(expected shape \(80,\)\)"
  )


def test_extra_key(tmp_path, state_dict):
  sd = {**state_dict, "blocks.0.attn.qkv.bias": torch.zeros(144)}
  _refused(tmp_path, sd, r"unexpected key 'blocks\.0\.attn\.qkv\.bias' of shape \(144,\)")


def test_wrong_shape(tmp_path, state_dict):
  sd = {**state_dict, "feature.2.weight": torch.zeros(48, 47)}
  _refused(tmp_path, sd, r"key 'feature\.2\.weight' has shape \(48, 47\), expected \(48, 48\)")


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


class _WritesMarker:
  path = ""

  def __reduce__(self):
    return open, (self.path, "w")  # unpickling this creates the marker file


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("how", ["torch_save", "pickle_2", "pickle_4"])
def test_code_executing_pickle_refused(tmp_path, how):
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
  )
  assert not marker.exists()


@pytest.mark.parametrize("cut", [0, 100, 2])
def test_truncated_file(tmp_path, state_dict, cut):
  torch.save(state_dict, tmp_path / "full.pt")
  data = (tmp_path / "full.pt").read_bytes()
  os.remove(tmp_path / "full.pt")
  _refused(
    tmp_path,
    None,
    r"src\.pt: not a readable PyTorch checkpoint, the file is truncated or "
    r"corrupt",
    raw=data[: len(data) // cut] if cut else b"",
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
