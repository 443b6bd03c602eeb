"""The Flax model against the independent PyTorch reference (docs/protocol.md §7), its
weights moved over by the converter (`convert.from_torch`)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from exfiqa_jax import ViTConfig, apply, create, split
from exfiqa_jax.models.inference import apply_bucketed, program_count
from tests.helpers import reference, requires_torch, torch_to_flax

CONFIGS = {
  # heads != 8, MLP ratio != 4, image not a multiple of the patch
  "odd": ViTConfig(image_size=40, patch_size=9, width=48, depth=3, num_heads=6, mlp_dim=80),
  "vit_s_shape": ViTConfig(
    image_size=112, patch_size=9, width=64, depth=4, num_heads=8, mlp_dim=256
  ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@requires_torch
def test_matches_pytorch_reference(name):
  cfg = CONFIGS[name]
  ref, x, emb, exits = reference(cfg, seed=1)
  graphdef, params, batch_stats = torch_to_flax(ref.state_dict(), cfg)
  out = apply(graphdef, params, batch_stats, jnp.asarray(x))
  assert out.exits.shape == (5, cfg.depth)
  np.testing.assert_allclose(out.exits, exits, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out.quality, exits[:, -1], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out.embedding, emb, atol=1e-5, rtol=1e-5)
  assert np.array_equal(out.quality, out.exits[:, -1])


def test_scan_equals_unrolled_loop():
  cfg = CONFIGS["odd"]
  model = create(cfg, seed=3)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 40, 40, 3)), jnp.float32)
  out = model(x)
  graphdef, stacked = nnx.split(model.blocks)
  h, scores = model.tokens(x), []
  for i in range(cfg.depth):  # the same blocks, one at a time, outside any scan
    h = nnx.merge(graphdef, jax.tree.map(lambda a: a[i], stacked))(h)
    scores.append(model.score(h))
  # Equal up to float32 rounding of differently fused programs.
  np.testing.assert_allclose(out.exits, jnp.stack(scores, 1), atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(out.embedding, model.embed(h), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_early_exit_is_prefix_of_full_pass(k):
  cfg = CONFIGS["odd"]
  graphdef, params, batch_stats = split(create(cfg, seed=4))
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (3, 40, 40, 3)), jnp.float32)
  full = apply(graphdef, params, batch_stats, x)
  part = apply(graphdef, params, batch_stats, x, num_layers=k, embedding=False)
  assert part.exits.shape == (3, k) and part.embedding is None
  np.testing.assert_allclose(part.exits, full.exits[:, :k], atol=1e-6, rtol=1e-6)
  np.testing.assert_allclose(part.quality, full.exits[:, k - 1], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("k", [2, 6])
def test_early_exit_runs_only_k_blocks(k):
  """The truncated program scans k blocks only and skips the embedding head."""
  cfg = ViTConfig(image_size=112, patch_size=9, width=64, depth=6, num_heads=4, mlp_dim=128)
  model = create(cfg)

  def trace(emb):
    return jax.make_jaxpr(lambda x: model(x, num_layers=k, embedding=emb))(
      jnp.zeros((2, 112, 112, 3))
    )

  jaxpr = trace(False)
  scans = [e for e in jaxpr.eqns if e.primitive.name == "scan"]
  assert [e.params["length"] for e in scans] == [k]
  # The embedding head's [N*D, D] kernel appears only when asked for.
  kernel_type = f"f32[{cfg.num_patches * cfg.width},{cfg.width}]"
  assert kernel_type not in str(jaxpr) and kernel_type in str(trace(True))


def test_num_layers_out_of_range():
  cfg = CONFIGS["odd"]
  graphdef, params, batch_stats = split(create(cfg))
  with pytest.raises(ValueError, match=r"num_layers=4 is outside 1..3"):
    apply(graphdef, params, batch_stats, jnp.zeros((1, 40, 40, 3)), num_layers=4)


@requires_torch
def test_bfloat16_close_to_float32():
  """bf16 matmuls (float32 accumulation, norms and softmax) stay within 2e-2 of float32."""
  cfg = CONFIGS["vit_s_shape"]
  ref, x, _, _ = reference(cfg, seed=2)
  graphdef, params, batch_stats = torch_to_flax(ref.state_dict(), cfg)
  f32 = apply(graphdef, params, batch_stats, jnp.asarray(x))
  bf16 = apply(graphdef, params, batch_stats, jnp.asarray(x), dtype=jnp.bfloat16)
  assert bf16.exits.dtype == jnp.float32
  scale = float(jnp.abs(f32.exits).max())
  assert float(jnp.abs(bf16.exits - f32.exits).max()) <= 2e-2 * scale
  assert float(jnp.abs(bf16.embedding - f32.embedding).max()) <= 2e-2 * float(
    jnp.abs(f32.embedding).max()
  )
  assert float(jnp.abs(bf16.exits - f32.exits).max()) > 0  # it really ran in bf16


@pytest.mark.parametrize("k", [2, 3])
def test_last_exit_only_equals_last_of_all_exits(k):
  cfg = CONFIGS["odd"]
  graphdef, params, batch_stats = split(create(cfg, seed=5))
  x = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (3, 40, 40, 3)), jnp.float32)
  full = apply(graphdef, params, batch_stats, x, num_layers=k)
  last = apply(graphdef, params, batch_stats, x, num_layers=k, all_exits=False)
  assert last.exits.shape == (3, 1)
  np.testing.assert_allclose(last.quality, full.exits[:, k - 1], atol=1e-6, rtol=1e-6)
  np.testing.assert_allclose(last.embedding, full.embedding, atol=1e-6, rtol=1e-6)


def test_bucketed_pads_and_trims():
  """Batches of 5 and 3 with buckets (2, 4): chunks 4+1 -> 4 and 2, then 3 -> 4."""
  cfg = dataclasses.replace(CONFIGS["odd"], mlp_dim=72)  # programs no other test compiled
  graphdef, params, batch_stats = split(create(cfg, seed=6))
  x = np.random.default_rng(3).uniform(-1, 1, (5, 40, 40, 3)).astype(np.float32)
  before = program_count()
  five = apply_bucketed(graphdef, params, batch_stats, x, buckets=(2, 4))
  three = apply_bucketed(graphdef, params, batch_stats, x[2:], buckets=(2, 4), embedding=False)
  assert program_count() - before == 3  # (4, emb), (2, emb), (4, no emb)
  direct = apply(graphdef, params, batch_stats, jnp.asarray(x))
  assert five.exits.shape == (5, 3) and three.exits.shape == (3, 3)
  # Other batch sizes are other float32 programs: equal up to rounding.
  np.testing.assert_allclose(five.exits, direct.exits, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(five.embedding, direct.embedding, atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(three.exits, direct.exits[2:], atol=1e-5, rtol=1e-5)
  assert three.embedding is None
  with pytest.raises(ValueError, match="empty batch"):
    apply_bucketed(graphdef, params, batch_stats, x[:0])


def test_micro_batches_equal_one_pass():
  """Rows through the model 4 at a time (lax.map, plus a remainder) equal one pass."""
  cfg = CONFIGS["odd"]
  graphdef, params, batch_stats = split(create(cfg, seed=6))
  x = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (10, 40, 40, 3)), jnp.float32)
  whole = apply(graphdef, params, batch_stats, x, micro_batch=None)
  for m in (4, 5, "auto"):
    part = apply(graphdef, params, batch_stats, x, micro_batch=m)
    np.testing.assert_allclose(part.exits, whole.exits, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(part.embedding, whole.embedding, atol=1e-5, rtol=1e-5)
  jaxpr = str(jax.make_jaxpr(lambda x: apply(graphdef, params, batch_stats, x, micro_batch=4))(x))
  assert "scan" in jaxpr and "length=2" in jaxpr  # two full chunks of 4, then 2 rows
