"""Staged (adaptive early-exit) inference against the full pass and a plain loop over images."""

import numpy as np
import pytest

from exfiqa_jax import ViTConfig, apply
from exfiqa_jax.adaptive.policy import Policy
from exfiqa_jax.models.staged import stage_buckets, staged_apply
from tests.score_helpers import random_variables

# Six blocks so that a policy has several stages; 16 patches of width 16 keep it fast.
CFG = ViTConfig(image_size=112, patch_size=28, width=16, depth=6, num_heads=2, mlp_dim=32)


class HashStop:
  """Stops an image after a stage when a hash of its exit there falls below p: a
  deterministic, data-dependent, arbitrary-looking rule (the same in a batch or alone)."""

  def __init__(self, stages, depth=CFG.depth, p=0.4):
    self.stages, self.depth, self.p = tuple(stages), depth, p

  def stop(self, exits, k):
    bits = np.ascontiguousarray(exits[:, k - 1], np.float32).view(np.uint32).astype(np.uint64)
    return ((bits * 2654435761) % 2**32) / 2**32 < self.p

  def quality(self, exits, k):
    return Policy("delta", 0.0, self.stages, self.depth, {}).quality(exits, k)


def _images(n, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, (n, 112, 112, 3)).astype(np.float32)


def _full(variables, x):
  """The full pass, on the batch padded to a whole number of 16-row micro-batches."""
  pad = -len(x) % 16
  xp = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
  return np.asarray(apply(*variables, xp, embedding=False).exits)[: len(x)]


def _loop_reference(policy, full):
  """Per image alone: the first stage where the policy stops it, and its quality as
  sum_i i x_i / sum_i i over exits 1..k (float64, in exit order)."""
  stops, quality = [], []
  for row in full:
    k = next(k for k in policy.stages if k == CFG.depth or policy.stop(row[None, :k], k)[0])
    stops.append(k)
    quality.append(sum(i * float(row[i - 1]) for i in range(1, k + 1)) / (k * (k + 1) / 2))
  return np.array(stops), np.array(quality, np.float32)


def _policies(full):
  """Every rule with calibration numbers taken from these exits, plus hash stops."""
  rng = np.random.default_rng(3)
  depth, stages = CFG.depth, (2, 4, 6)
  w = np.arange(1, depth + 1)
  running = np.cumsum(full * w, axis=1) / np.cumsum(w)
  lo = [float(np.quantile(running[:, k - 1], 0.3)) for k in stages[:-1]] + [None]
  hi = [float(np.quantile(running[:, k - 1], 0.7)) for k in stages[:-1]] + [None]
  gate = dict(
    mean=[[0.0] * 5] * 3, std=[[1.0] * 5] * 3, w=rng.normal(size=(3, 5)).tolist(), b=[0.0] * 3
  )
  scale = float(running[:, -1].std())
  return [
    Policy("delta", 0.5, stages, depth, dict(scale=scale)),
    Policy("delta", 0.5, tuple(range(1, depth + 1)), depth, dict(scale=scale)),
    Policy("band", 0.3, stages, depth, dict(lo=lo, hi=hi)),
    Policy("gate", 0.5, stages, depth, gate),
    Policy("delta", 0.0, stages, depth, dict(scale=scale)),  # never stops early
    HashStop(range(1, depth + 1)),
    HashStop((1, depth), p=1.0),  # every image stops after block 1
  ]


@pytest.mark.parametrize("batch", [16, 40])
def test_staged_exits_equal_the_full_pass_bit_for_bit(batch):
  variables = random_variables(CFG, seed=5)
  x = _images(batch)
  full = _full(variables, x)
  patterns = set()
  for policy in _policies(full):
    out = staged_apply(*variables, x, policy)
    patterns.add(tuple(out.blocks_run))
    stops, quality = _loop_reference(policy, full)
    np.testing.assert_array_equal(out.blocks_run, stops)
    ran = np.arange(CFG.depth)[None, :] < stops[:, None]
    np.testing.assert_array_equal(out.exits[ran], full[ran])  # bit for bit
    assert np.isnan(out.exits[~ran]).all()
    np.testing.assert_array_equal(out.quality, policy.quality(full, stops))
    np.testing.assert_allclose(out.quality, quality, rtol=1e-6, atol=0)
  assert len(patterns) >= 5  # the policies stop the images in different patterns


def test_stopped_images_never_run_later_blocks():
  """Counted by the compiled stage programs: every row carries its image's tag
  through the gathers, and each loop iteration over a block counts it."""
  variables = random_variables(CFG, seed=6)
  x = _images(64, seed=1)
  full = _full(variables, x)
  for policy in _policies(full)[:4] + [HashStop(range(1, CFG.depth + 1))]:
    out = staged_apply(*variables, x, policy)
    stops, _ = _loop_reference(policy, full)
    np.testing.assert_array_equal(out.visits, stops)  # no block after the stop, none missed
    np.testing.assert_array_equal(out.block_calls, [(stops > j).sum() for j in range(CFG.depth)])
    stages = [k for k in policy.stages][: len(out.rows)]
    starts = [0, *stages[:-1]]
    assert list(out.live) == [(stops > a).sum() for a in starts]
    sizes = stage_buckets(64, 16)
    assert list(out.rows) == [min(s for s in sizes if s >= n) for n in out.live]
  # Some policy above stopped most images early: later stages ran on fewer rows.
  few = staged_apply(*variables, x, HashStop((1, 3, CFG.depth), p=0.8))
  assert few.rows[0] == 64 and few.rows[-1] < 64 and few.visits.sum() < 64 * CFG.depth


def test_buckets():
  assert stage_buckets(64, 16) == [16, 32, 48, 64]
  assert stage_buckets(256, 16) == [16, 32, 48, 64, 80, 112, 144, 192, 240, 256]
  assert stage_buckets(40, 16) == [16, 32, 48]
  assert stage_buckets(5, 16) == [16]
  assert stage_buckets(40, None) == [1, 2, 4, 8, 16, 32, 40]
  assert stage_buckets(40, 16, (16, 32, 64)) == [16, 32, 48]
  with pytest.raises(ValueError, match="at least one image"):
    stage_buckets(0, 16)
  with pytest.raises(ValueError, match="multiples of the 16-row micro-batch"):
    stage_buckets(64, 16, (8, 16))


def test_whole_batch_stages_agree_to_rounding():
  """Without micro-batches (the accelerator path) stages take their bucket whole."""
  variables = random_variables(CFG, seed=7)
  x = _images(24, seed=2)
  full = np.asarray(apply(*variables, x, embedding=False, micro_batch=None).exits)
  policy = HashStop(range(1, CFG.depth + 1))
  out = staged_apply(*variables, x, policy, micro_batch=None)
  assert set(out.rows) - {1, 2, 4, 8, 16, 24} == set()
  ran = ~np.isnan(out.exits)
  np.testing.assert_allclose(out.exits[ran], full[ran], atol=1e-5, rtol=0)
  np.testing.assert_array_equal(out.visits, out.blocks_run)


def test_bad_policy_is_refused_before_any_work():
  variables = random_variables(CFG, seed=5)
  with pytest.raises(ValueError, match=r"do not fit a model of depth 6"):
    staged_apply(*variables, _images(2), HashStop((2, 4), depth=4))
  with pytest.raises(ValueError, match=r"do not fit a model of depth 6"):
    staged_apply(*variables, _images(2), HashStop((4, 2, 6)))
  with pytest.raises(ValueError, match="at least one image"):
    staged_apply(*variables, _images(0), HashStop((6,)))
