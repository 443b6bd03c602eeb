"""SER-FIQ on the FR backbones against an independent PyTorch reference of its head, and
its seeded masks reproducible across runs, batches, positions and devices."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.models.serfiq import serfiq_masks, serfiq_quality
from tests.assessors.fr_pairs import inputs, pair, random_model
from tests.helpers import import_torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = dict(
  layers=(1, 1, 1, 1), widths=(8, 8, 16, 16), stem_width=8, embedding_size=16, image_size=32
)


@pytest.mark.parametrize("family", ["arcface", "curricularface"])
@pytest.mark.parametrize("head_bn", [True, False])
def test_explicit_masks_match_the_pytorch_reference(family, head_bn):
  import_torch()
  from exfiqa_jax.convert.references.serfiq import serfiq_reference

  ref, model, config = pair(family)
  x = inputs(config, 3)
  t, f = 12, model_features(model)
  masks = np.random.default_rng(0).random((t, 3, f)) < 0.5
  got = np.asarray(serfiq_quality(model, x, passes=t, masks=masks, head_bn=head_bn))
  want = serfiq_reference(ref, x, masks, 0.5, head_bn=head_bn)
  print(f"{family} head_bn={head_bn}: max |diff| {np.abs(got - want).max():.2e}")
  # Measured on this CPU at float32: max |diff| <= 1e-7 on qualities near 0.5.
  assert got.shape == (3,) and got.dtype == np.float32
  np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-4)
  assert np.ptp(want) > 1e-3  # the images differ, so a constant could not pass
  # Other masks give other qualities: the masks are used.
  other = np.asarray(serfiq_quality(model, x, passes=t, masks=~masks, head_bn=head_bn))
  assert np.abs(other - got).max() > 1e-4


def model_features(model) -> int:
  fc = model.fc if hasattr(model, "fc") else model.output_layer[3]
  return fc.kernel.shape[0]


def test_seeded_masks_follow_the_image_not_the_batch():
  config = FRConfig.for_family("arcface", **SMALL)
  model = random_model(config, seed=1)
  x = inputs(config, 8)  # the shapes of the 8-device test: one compilation for both
  key, ids = jax.random.key(7), np.arange(100, 108, dtype=np.uint32)
  whole = np.asarray(serfiq_quality(model, x, passes=16, key=key, image_ids=ids))
  again = np.asarray(serfiq_quality(model, x, passes=16, key=key, image_ids=ids))
  np.testing.assert_array_equal(whole, again)
  # The key path draws exactly `serfiq_masks`.
  masks = serfiq_masks(key, ids, 16, model_features(model), 0.5)
  explicit = np.asarray(serfiq_quality(model, x, passes=16, masks=masks))
  np.testing.assert_allclose(explicit, whole, atol=1e-6, rtol=0)
  # Other batch sizes and positions: [4, 1, 0] then [7, 3, 2].
  for order in ([4, 1, 0], [7, 3, 2]):
    part = np.asarray(serfiq_quality(model, x[order], passes=16, key=key, image_ids=ids[order]))
    np.testing.assert_allclose(part, whole[order], atol=1e-6, rtol=0)
  # Masks: True with probability 1 - p, different per image and pass.
  m = np.asarray(masks)
  assert m.shape == (16, 8, model_features(model)) and m.dtype == bool
  assert abs(m.mean() - 0.5) < 0.02
  assert not np.array_equal(m[:, 0], m[:, 1]) and not np.array_equal(m[0], m[1])
  other = np.asarray(serfiq_quality(model, x, passes=16, key=jax.random.key(8), image_ids=ids))
  assert np.abs(other - whole).max() > 1e-5


WORKER = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from exfiqa_jax.models.fr_config import FRConfig
    from exfiqa_jax.models.serfiq import serfiq_quality
    from tests.assessors.fr_pairs import inputs, random_model
    args = json.loads(sys.argv[1])
    config = FRConfig.for_family("arcface", **args["small"])
    model = random_model(config, seed=1)
    x = inputs(config, 8)
    mesh = jax.make_mesh((jax.device_count(),), ("b",))
    xs = jax.device_put(x, NamedSharding(mesh, P("b")))
    ids = jax.device_put(np.arange(100, 108, dtype=np.uint32), NamedSharding(mesh, P("b")))
    q = serfiq_quality(model, xs, passes=16, key=jax.random.key(7), image_ids=ids)
    print(json.dumps({"devices": jax.device_count(), "q": np.asarray(q).tolist()}))
""")


def test_seeded_qualities_are_the_same_on_8_devices(tmp_path):
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  env = {
    **os.environ,
    "PYTHONPATH": ROOT,
    "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    "JAX_PLATFORMS": "cpu",
  }
  out = subprocess.run(
    [sys.executable, str(script), json.dumps({"small": SMALL})],
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert got["devices"] == 8
  config = FRConfig.for_family("arcface", **SMALL)
  model = random_model(config, seed=1)
  x = inputs(config, 8)
  ids = np.arange(100, 108, dtype=np.uint32)
  want = np.asarray(serfiq_quality(model, x, passes=16, key=jax.random.key(7), image_ids=ids))
  np.testing.assert_allclose(np.asarray(got["q"], np.float32), want, atol=1e-6, rtol=0)


def test_bad_arguments_are_refused():
  config = FRConfig.for_family("arcface", **SMALL)
  model = random_model(config, seed=1)
  x = inputs(config, 2)
  f, key, ids = model_features(model), jax.random.key(0), np.arange(2)
  ok = np.ones((4, 2, f), bool)
  cases = [
    (dict(passes=1, masks=ok[:1]), "passes must be an integer >= 2"),
    (dict(passes=2.0, masks=ok[:2]), "passes must be an integer >= 2"),
    (dict(passes=4, p=0.0, masks=ok), r"dropout p must lie in \(0, 1\), got 0.0"),
    (dict(passes=4, p=1.0, masks=ok), r"dropout p must lie in \(0, 1\), got 1.0"),
    (dict(passes=4, masks=ok[:, :1]), r"masks must be \[passes, B, F\] = \(4, 2, %d\)" % f),
    (dict(passes=4, masks=ok[..., 1:]), r"got \(4, 2, %d\)" % (f - 1)),
    (dict(passes=4, masks=ok, key=key, image_ids=ids), "either masks or key, not both"),
    (dict(passes=4), "give a jax.random key"),
    (dict(passes=4, key=key), "image_ids \\[B\\] \\(global image indices\\) are required"),
    (dict(passes=4, key=key, image_ids=np.arange(3)), r"image_ids must be \[B\] = \[2\]"),
  ]
  for kwargs, message in cases:
    with pytest.raises(ValueError, match=message):
      serfiq_quality(model, x, **kwargs)
  with pytest.raises(ValueError, match=r"x must be \[B, S, S, 3\]"):
    serfiq_quality(model, x[..., :1], passes=4, masks=ok)
  with pytest.raises(TypeError, match="SER-FIQ needs an IResNet or IRBackbone, got int"):
    serfiq_quality(3, x, passes=4, masks=ok)
