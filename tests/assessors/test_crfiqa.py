"""CR-FIQA: the converted model against its independent PyTorch reference (the iResNet of
fdbtrs/CR-FIQA `backbones/iresnet.py` with its `qs` head), its evaluation preprocessing
(BGR, (x / 255 - 0.5) / 0.5, no flip), and every refusal of `exfiqa convert --family
cr-fiqa`, by type and message, with nothing written."""

import os

import numpy as np
import pytest

from tests.helpers import import_torch

torch = import_torch()

import exfiqa_jax
from exfiqa_jax.cli import main
from exfiqa_jax.convert import FAMILIES, convert_file, from_torch
from exfiqa_jax.convert.references.cr_fiqa import CRFIQAReference
from exfiqa_jax.convert.references.face_recognition import IRBackboneReference, randomize_fr_
from exfiqa_jax.models.fr_config import IRESNET_DEPTHS, CRFIQAConfig, FRConfig
from exfiqa_jax.models.inference import apply
from exfiqa_jax.models.registry import fr_input, kind_of
from tests.fr_helpers import SIZES, reference_state_dict, tiny
from tests.score_helpers import faces

# float32 parity bound of the issue (2e-4 abs + 2e-4 rel). Measured on this CPU, max |diff|
# (max |reference|): tiny depths embedding 4e-6 (5), quality 2e-6 (4); iresnet50 depths at
# tiny widths (random weights grow the activations) embedding 3.5e-4 (181), quality 3.1e-4
# (126): 2e-6 relative.
ATOL = RTOL = 2e-4


def _reference(seed: int, **sizes) -> tuple[CRFIQAConfig, CRFIQAReference]:
  config = tiny("cr-fiqa", **sizes)
  f = FAMILIES["cr-fiqa"]
  return config, f.randomize(f.reference(config), seed)


def _run_reference(ref, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  with torch.no_grad():
    emb, qs = ref(torch.from_numpy(x).permute(0, 3, 1, 2))
  return emb.numpy(), qs.numpy()


@pytest.mark.parametrize("layers", [SIZES["layers"], IRESNET_DEPTHS[50]], ids=["tiny", "r50"])
def test_matches_the_pytorch_reference(tmp_path, layers):
  """CR-FIQA(S)'s block counts (iresnet50) and a tiny depth: embedding and qs of the
  converted checkpoint equal the reference's on the release's own input rule."""
  config, ref = _reference(3, layers=layers)
  torch.save(ref.state_dict(), tmp_path / "32572backbone.pth")
  convert_file(str(tmp_path / "32572backbone.pth"), str(tmp_path / "ckpt"), family="cr-fiqa")
  got = exfiqa_jax.load(str(tmp_path / "ckpt"))
  assert got.config == config and type(got.config) is CRFIQAConfig
  imgs = faces(5, seed=7)  # stored RGB
  # CR-FIQA's evaluation: cv2.imread (BGR, not converted), then div(255).sub(0.5).div(0.5).
  x = ((imgs[..., ::-1].astype(np.float32) / 255 - 0.5) / 0.5).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(fr_input(imgs, "rgb", config)), x)
  want_emb, want_qs = _run_reference(ref, x)
  out = kind_of(config).outputs(apply(*got[1:], x))
  emb, q = np.asarray(out["embeddings"]), np.asarray(out["quality"])
  gap = {
    "embedding": (np.abs(emb - want_emb).max(), np.abs(want_emb).max()),
    "quality": (np.abs(q - want_qs[:, 0]).max(), np.abs(want_qs).max()),
  }
  print(f"CR-FIQA {config.name}: (max |diff|, max |reference|) {gap}")
  np.testing.assert_allclose(emb, want_emb, atol=ATOL, rtol=RTOL)
  np.testing.assert_allclose(q, want_qs[:, 0], atol=ATOL, rtol=RTOL)
  assert q.shape == (5,) and np.ptp(q) > 0.05 * np.abs(q).max()  # not a constant head


def test_verify_reports_both_outputs(tmp_path, capsys):
  _, ref = _reference(5)
  torch.save(ref.state_dict(), tmp_path / "src.pth")
  dst = str(tmp_path / "ckpt")
  assert main(["convert", str(tmp_path / "src.pth"), dst, "--family", "cr-fiqa", "--verify"]) == 0
  out = capsys.readouterr().out
  diffs = {
    line.split("|")[1].strip(): float(line.split("|")[2])
    for line in out.splitlines()
    if line.startswith(("| embedding", "| quality"))
  }
  assert set(diffs) == {"embedding", "quality"} and max(diffs.values()) < 1e-4


def test_config_and_family_agree():
  assert FRConfig.for_family("cr-fiqa", **SIZES) == CRFIQAConfig(**SIZES)
  assert CRFIQAConfig().channel_order == "bgr" and CRFIQAConfig().input_scale == "half"
  with pytest.raises(ValueError, match=r"family 'cr-fiqa' needs a CRFIQAConfig"):
    FRConfig(family="cr-fiqa")
  with pytest.raises(ValueError, match=r"a CR-FIQA model is an iresnet of family 'cr-fiqa'"):
    CRFIQAConfig(family="arcface")


def _refused(tmp_path, sd, match, family="cr-fiqa", error=ValueError):
  torch.save(sd, tmp_path / "src.pt")
  with pytest.raises(error, match=match):
    convert_file(str(tmp_path / "src.pt"), str(tmp_path / "dst"), family=family)
  assert sorted(os.listdir(tmp_path)) == ["src.pt"]  # no DST, no temporary sibling


def test_missing_qs_head_refused(tmp_path):
  _, plain = reference_state_dict(tiny("arcface"), seed=2)
  _refused(
    tmp_path,
    plain,
    r"src\.pt: missing key 'qs\.weight': CR-FIQA's quality head `qs` .* is not in the file; "
    r"a plain iResNet converts with --family arcface",
  )
  _, ref = _reference(2)
  sd = {k: v for k, v in ref.state_dict().items() if k != "qs.bias"}
  _refused(tmp_path, sd, r"src\.pt: missing key 'qs\.bias'")


def test_head_of_a_wrong_shape_refused(tmp_path):
  _, ref = _reference(2)
  sd = {**ref.state_dict(), "qs.weight": torch.zeros(2, 32), "qs.bias": torch.zeros(2)}
  _refused(
    tmp_path,
    sd,
    r"src\.pt: key 'qs\.weight' has shape \(2, 32\), expected \(1, 32\); "
    r"key 'qs\.bias' has shape \(2,\), expected \(1,\)",
  )


def test_wrong_family_refused(tmp_path, capsys):
  _, ref = _reference(2)
  _refused(  # a CR-FIQA file as a plain ArcFace backbone: its head is not an ArcFace key
    tmp_path,
    ref.state_dict(),
    r"src\.pt: unexpected key 'qs\.weight' of shape \(1, 32\)",
    "arcface",
  )
  ir = randomize_fr_(IRBackboneReference(**SIZES).eval(), 1).state_dict()
  _refused(
    tmp_path,
    ir,
    r"src\.pt: --family cr-fiqa needs an insightface iResNet .*; found CurricularFace's IR "
    r"backbone .*\(--family curricularface\)",
  )
  torch.save(ir, tmp_path / "src.pt")
  assert main(["convert", str(tmp_path / "src.pt"), str(tmp_path / "dst"), "--family", "cr-fiqa"])
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "Traceback" not in err
  assert sorted(os.listdir(tmp_path)) == ["src.pt"]


def test_from_torch_takes_the_training_wrapper():
  """The `module.` prefix of DataParallel, as the release saved its backbone."""
  config, ref = _reference(4)
  sd = {f"module.{k}": v for k, v in ref.state_dict().items()}
  got, params, _ = from_torch(sd, family="cr-fiqa")
  assert got == config
  np.testing.assert_array_equal(
    np.asarray(params["qs"]["kernel"][...]), ref.qs.weight.detach().numpy().T
  )
