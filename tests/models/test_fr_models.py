"""The Flax face-recognition backbones against their independent PyTorch references."""

import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax.convert import FAMILIES
from exfiqa_jax.convert.core import variables
from exfiqa_jax.models.fr_config import RELEASES, FRConfig
from exfiqa_jax.models.inference import abstract_variables, apply
from exfiqa_jax.models.registry import fr_input
from tests.fr_helpers import reference_embedding, reference_state_dict, tiny
from tests.score_helpers import faces

CASES = [
  ("arcface", {}),  # iResNet, eps 1e-5
  ("magface", {}),  # iResNet, eps 2e-5
  ("arcface", dict(layers=(2, 1, 3), widths=(8, 16, 8), image_size=64)),  # 3 stages, 8x8 map
  ("curricularface", {}),  # IR: MaxPool shortcut in body.0, conv shortcuts after
  ("curricularface", dict(stem_width=4)),  # IR with a conv shortcut in body.0
]


@pytest.mark.parametrize("family,sizes", CASES)
def test_embedding_matches_the_pytorch_reference(family, sizes):
  config = tiny(family, **sizes)
  ref, sd = reference_state_dict(config, seed=3)
  params, stats = variables(FAMILIES[family], {k: v.numpy() for k, v in sd.items()}, config)
  s = config.image_size
  x = np.asarray(fr_input(faces(4, 1)[:, :s, :s], "rgb", config))
  want = reference_embedding(ref, x)
  graphdef = abstract_variables(config)[0]
  got = np.asarray(apply(graphdef, params, stats, x))
  assert got.shape == (4, config.embedding_size) and got.dtype == np.float32
  # Measured on this CPU at float32: max |diff| 3-7e-6 on embeddings of max |e| 3-7.
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-4)
  assert np.abs(want).max() > 1.0  # the comparison is not of near-zero outputs
  bf16 = np.asarray(apply(graphdef, params, stats, x, dtype=jnp.bfloat16))
  assert np.abs(bf16 - want).max() <= 5e-2 * np.abs(want).max()


def test_rows_are_independent_and_inputs_follow_the_family():
  family = "magface"
  config = tiny(family)
  _, sd = reference_state_dict(config, seed=4)
  params, stats = variables(FAMILIES[family], {k: v.numpy() for k, v in sd.items()}, config)
  graphdef = abstract_variables(config)[0]
  imgs = faces(3, 2)
  x = fr_input(imgs, "rgb", config)
  # MagFace: BGR, x / 255 (its gen_feat.py reads with cv2 and scales by ToTensor).
  np.testing.assert_array_equal(np.asarray(x), imgs[..., ::-1].astype(np.float32) / 255.0)
  np.testing.assert_array_equal(np.asarray(fr_input(imgs, "bgr", config)), imgs / np.float32(255))
  arc = tiny("arcface")
  np.testing.assert_array_equal(
    np.asarray(fr_input(imgs, "rgb", arc)), (imgs.astype(np.float32) / 255 - 0.5) / 0.5
  )
  whole = np.asarray(apply(graphdef, params, stats, x))
  one = np.asarray(apply(graphdef, params, stats, x[1:2]))
  np.testing.assert_allclose(one[0], whole[1], atol=1e-5, rtol=1e-5)


def test_family_defaults_and_config_checks():
  assert {f: (v.arch, v.bn_eps, v.channel_order, v.input_scale) for f, v in RELEASES.items()} == {
    "arcface": ("iresnet", 1e-5, "rgb", "half"),
    "elasticface": ("iresnet", 1e-5, "rgb", "half"),
    "magface": ("iresnet", 2e-5, "bgr", "unit"),
    "curricularface": ("irse", 1e-5, "rgb", "half"),
    "arcface-mxnet": ("iresnet", 2e-5, "rgb", "mxnet"),
    "cr-fiqa": ("iresnet", 1e-5, "bgr", "half"),
  }
  assert FRConfig.for_family("magface").name == "iresnet100"
  assert FRConfig.for_family("curricularface").name == "ir101"
  c = FRConfig.for_family("arcface")
  assert (c.grid, c.fc_inputs) == (7, 512 * 49)
  assert FRConfig.from_dict(c.to_dict()) == c
  with pytest.raises(ValueError, match="unknown face-recognition family 'facenet'"):
    FRConfig.for_family("facenet")
  with pytest.raises(ValueError, match="image_size 100 is not a multiple of 2\\*\\*4"):
    FRConfig(image_size=100)
