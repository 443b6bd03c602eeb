"""GraFIQs on the FR backbones against an independent torch.autograd reference of
GraFIQs' BN_Model logic, per-image results independent of the batch, and refusals."""

import numpy as np
import pytest

from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.grafiqs import VARIANTS, grafiqs_quality
from tests.assessors.fr_pairs import inputs, pair, random_model
from tests.helpers import import_torch

SMALL = dict(
  layers=(1, 1, 1, 1), widths=(8, 8, 16, 16), stem_width=8, embedding_size=16, image_size=32
)


@pytest.mark.parametrize("family", ["arcface", "curricularface"])
def test_every_variant_matches_the_torch_autograd_reference(family):
  import_torch()
  from exfiqa_jax.convert.references.grafiqs import grafiqs_reference

  ref, model, config = pair(family)
  x = inputs(config, 3)
  got = {k: np.asarray(v) for k, v in grafiqs_quality(model, x).items()}
  want = grafiqs_reference(ref, x)
  assert sorted(got) == sorted(VARIANTS)
  for v in VARIANTS:
    gap = np.abs(-got[v] - want[v]).max()
    print(f"{family} {v}: max |diff| {gap:.2e} on sums up to {want[v].max():.3g}")
    assert got[v].shape == (3,) and got[v].dtype == np.float32
    # Higher = better: the negated upstream sum. Measured: max rel diff <= 3e-7.
    np.testing.assert_allclose(-got[v], want[v], atol=2e-4, rtol=2e-4, err_msg=v)
    assert want[v].min() > 1e-2 and np.ptp(want[v]) > 1e-4 * want[v].max()


def test_per_image_results_do_not_depend_on_the_batch():
  config = FRConfig.for_family("arcface", **SMALL)
  model = random_model(config, seed=2)
  x = inputs(config, 4, seed=5)
  whole = grafiqs_quality(model, x, variants=("image", "block2"))
  assert sorted(whole) == ["block2", "image"]
  for order in ([3, 0], [1, 2]):
    part = grafiqs_quality(model, x[order], variants=("image", "block2"))
    for v in whole:
      np.testing.assert_allclose(np.asarray(part[v]), np.asarray(whole[v])[order], rtol=1e-5)
  assert np.all(np.asarray(whole["image"]) < 0)  # -sum |grad|


def test_bad_arguments_are_refused():
  config = FRConfig.for_family("arcface", **dict(SMALL, layers=(1, 1, 1), widths=(8, 8, 16)))
  model = random_model(config, seed=2)
  x = inputs(config, 2)
  message = r"unknown variant\(s\) \['block4'\]; one of image, block1, block2, block3"
  with pytest.raises(ValueError, match=message):
    grafiqs_quality(model, x)  # a 3-stage model has no block4
  with pytest.raises(ValueError, match=r"unknown variant\(s\) \['grad'\]"):
    grafiqs_quality(model, x, variants=("image", "grad"))
  with pytest.raises(ValueError, match=r"unknown variant\(s\) \(none given\)"):
    grafiqs_quality(model, x, variants=())
  with pytest.raises(ValueError, match=r"x must be \[B, S, S, 3\], got shape \(2, 32, 32\)"):
    grafiqs_quality(model, x[..., 0], variants=("image",))
  with pytest.raises(TypeError, match="GraFIQs needs an IResNet or IRBackbone, got str"):
    grafiqs_quality("model", x)
