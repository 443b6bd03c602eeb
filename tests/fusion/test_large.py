"""The large-pair-set path (exfiqa_jax.fusion.large) on small tie-heavy pair sets forced
through it: every row equals the sort-based engine and the plain references on the
exact rational fusion, alone (`evaluate_variant`) and on 8 forced devices."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from exfiqa_jax.fusion import chunks, large
from exfiqa_jax.fusion.engine import evaluate_variant
from exfiqa_jax.fusion.rules import RULES
from exfiqa_jax.fusion.subsets import subset_masks
from exfiqa_jax.fusion.sweep import sweep
from exfiqa_jax.metrics import make_pairset
from exfiqa_jax.metrics.keys import KEY_MAX
from exfiqa_jax.metrics.reference import edc_reference, edc_threshold, erc_reference
from tests.fusion.test_exact import exact_fused

L, FMRS, LIMITS = 6, (0.05, 0.01), (0.2, 0.3)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def data(seed=0, n=60, p=900):
  """Exit scores on a grid of quarters (fused ties everywhere), template pairs drawn
  at random (repeated pairs and a template with itself included), rounded scores."""
  rng = np.random.default_rng(seed)
  exits = rng.integers(0, 5, (n, L)).astype(np.float32) / 4
  a, b = rng.integers(0, n, (2, p))
  a[:3] = b[:3]  # pairs of a template with itself
  a[3:6], b[3:6] = b[6:9], a[6:9]  # a pair listed again, ends swapped
  labels = (rng.random(p) < 0.3).astype(int)
  scores = np.round(rng.normal(size=p) + labels, 1)
  return exits, a, b, labels, scores


@pytest.fixture(scope="module")
def case():
  d = data()
  return d, make_pairset(*d, fmrs=FMRS, limits=LIMITS)


def test_prepare_keeps_repeated_and_self_pairs_out_of_the_bits(case):
  (_, a, b, _, _), ps = case
  lg = large.prepare(ps, bits=True)
  rem = set(zip(np.asarray(lg.rem_a).tolist(), np.asarray(lg.rem_b).tolist(), strict=True))
  assert {(int(x), int(x)) for x in a[:3]} <= rem
  assert {(int(x), int(y)) for x, y in zip(a[6:9], b[6:9], strict=True)} <= rem  # listed again
  adj = np.unpackbits(np.asarray(lg.adj).view(np.uint8), axis=1, bitorder="little")
  adj = adj[:, : len(adj)]
  assert (adj == adj.T).all()
  assert int(adj.sum()) // 2 + len(np.asarray(lg.rem_a)) == len(a)  # every pair counted once
  assert adj[np.arange(len(adj)), np.arange(len(adj))].sum() == 0


@pytest.mark.parametrize(("bits", "host"), [(True, True), (True, False), (False, True)])
def test_every_row_equals_the_sort_based_engine(case, bits, host):
  _, ps = case
  masks = subset_masks(L)
  w = np.broadcast_to(np.arange(1, L + 1), masks.shape)
  for rule in RULES:
    want = chunks.score_variants(ps, masks, w, rule)
    got = large.score_variants(ps, masks, w, rule, bits=bits, host=host)
    assert np.isfinite(want[0]).all()
    for x, y in zip(want, got, strict=True):
      np.testing.assert_array_equal(y, x)


def test_float_weights_and_a_narrow_impostor_window(case, monkeypatch):
  _, ps = case
  masks = subset_masks(L)[::3]
  w = np.random.default_rng(3).random((len(masks), L)).astype(np.float32)
  want = chunks.score_variants(ps, masks, w, "weighted")
  monkeypatch.setattr(large, "first_top", lambda ps: 32)  # widened 8x per try
  got = large.score_variants(ps, masks, w, "weighted")
  for x, y in zip(want, got, strict=True):
    np.testing.assert_array_equal(y, x)


def test_routed_sweep_rows_equal_the_references_and_single_evaluation(monkeypatch):
  exits, a, b, labels, scores = data(seed=1, n=40, p=500)
  ps = make_pairset(exits, a, b, labels, scores, fmrs=FMRS, limits=LIMITS)
  plain = sweep(ps)
  monkeypatch.setattr(large, "LARGE_PAIRS", 1)
  large._LAST.clear()
  t = sweep(ps)
  assert large._LAST and large._LAST[0] is ps  # chunks.score_variants routed it here
  for k in plain:
    np.testing.assert_array_equal(t[k], plain[k], err_msg=k)
  thr = edc_threshold(scores, labels, 1e-3)
  for row in np.random.default_rng(2).choice(len(t["subset"]), 5, replace=False):
    mask = (int(t["subset"][row]) >> np.arange(L)) & 1 == 1
    rule = str(t["rule"][row])
    q = exact_fused(exits, mask, rule)
    pq = [min(q[i], q[j]) for i, j in zip(a, b, strict=True)]
    level = {v: i for i, v in enumerate(sorted(set(pq)))}
    rank = [level[v] for v in pq]
    for fmr in FMRS:
      _, area = erc_reference(rank, scores, labels, fmr)
      assert t[f"erc_area@{fmr:g}"][row] == pytest.approx(area, abs=1e-6, nan_ok=True)
    _, areas, _ = edc_reference(rank, scores, labels, thr, LIMITS)
    np.testing.assert_allclose([t["edc_area@0.2"][row], t["edc_area@0.3"][row]], areas, atol=1e-6)
    one = evaluate_variant(ps, mask, rule)
    np.testing.assert_array_equal(
      one["erc_area"], [t["erc_area@0.05"][row], t["erc_area@0.01"][row]]
    )
    np.testing.assert_array_equal(one["edc_area"], [t["edc_area@0.2"][row], t["edc_area@0.3"][row]])


WORKER = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from exfiqa_jax.fusion import large
    from exfiqa_jax.fusion.sweep import sweep
    from exfiqa_jax.metrics import make_pairset
    from tests.fusion.test_large import data
    large.LARGE_PAIRS = 1
    ps = make_pairset(*data(seed=4, n=50, p=400), fmrs=(0.05, 0.01))
    args = json.loads(sys.argv[1])
    for name, n in args["devices"].items():
      t = sweep(ps, rules=("weighted", "median"), devices=jax.local_devices()[:n])
      np.savez(f"{args['dir']}/{name}.npz", **{k: np.asarray(v) for k, v in t.items()})
    print("devices", jax.device_count())
""")


def test_eight_devices_give_the_table_of_one(tmp_path):
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  env = {
    **os.environ,
    "PYTHONPATH": ROOT,
    "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
  }
  arg = json.dumps({"dir": str(tmp_path), "devices": {"one": 1, "eight": 8, "three": 3}})
  out = subprocess.run(
    [sys.executable, str(script), arg], env=env, capture_output=True, text=True, timeout=600
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert "devices 8" in out.stdout
  one = np.load(tmp_path / "one.npz")
  assert len(one["subset"]) == 63 * 2 and np.isfinite(one["edc_area@0.2"]).all()
  for other in ("eight", "three"):
    x = np.load(tmp_path / f"{other}.npz")
    for k in one.files:
      np.testing.assert_array_equal(x[k], one[k], err_msg=k)


def test_a_variant_alone_equals_its_row_in_a_batch(case):
  _, ps = case
  masks = subset_masks(L)
  w = np.broadcast_to(np.arange(1, L + 1), masks.shape)
  run = large.runner(ps, masks, w, "median", chunk=1)
  batch = run(0, len(masks))
  for i in (0, 17, 62):  # one chunk alone: its popcount pass split over the threads
    for x, y in zip(run(i, i + 1), batch, strict=True):
      np.testing.assert_array_equal(x[0], y[i])
  lg = large.prepared(ps)
  f = np.random.default_rng(5).integers(0, 9, ps.exits.shape[0])
  valid = np.asarray(ps.image_valid)
  for x, y in zip(large.host_counts(lg, valid, f), large.host_counts(lg, valid, f, 3), strict=True):
    np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("split", [1, 2, 3])
def test_host_counts_over_several_slices_equal_a_count_of_the_pairs(split):
  """More templates than one slice of the popcount pass (HOST_ROWS), a last block cut
  short, split over threads: each position's pairs (lower end there, ties between the
  two ends by position) counted from the pair list itself."""
  n = 3 * large.HOST_ROWS + 37
  exits, a, b, labels, scores = data(seed=6, n=n, p=20 * n)
  ps = make_pairset(exits, a, b, labels, scores, fmrs=FMRS, limits=LIMITS)
  full = large.prepare(ps, bits=True)
  assert len(np.asarray(full.rem_a)) < len(a) // 4  # most pairs in the bits
  size = len(np.asarray(ps.image_valid))  # the pair set's templates, padded (by 16s)
  assert size > n + 5
  for seed, m in [(0, size), (1, size), (2, size), (3, size - 5)]:
    # m = size - 5: 5 padding templates fewer (no pairs), the last block cut short and
    # holding template 0's partners (the padding of a block reads template 0's bits)
    lg = full._replace(adj64=full.adj64[:m])
    valid = np.asarray(ps.image_valid)[:m] | (m < size)
    f = np.random.default_rng(seed).integers(0, 40 * (seed + 1), m)  # ties of every size
    if m < size:
      f[np.r_[b[a == 0], a[b == 0]]] = 10**6
    order, upto, rank = large.host_counts(lg, valid, f, split)
    f = np.where(valid, f, KEY_MAX)  # padding last
    assert (np.diff(f[order]) >= 0).all()
    pos = np.empty(m, int)
    pos[order] = np.arange(m)
    want = np.cumsum(np.bincount(np.minimum(pos[a], pos[b]), minlength=m))
    np.testing.assert_array_equal(upto, want)
    np.testing.assert_array_equal(rank, np.searchsorted(np.sort(f), f))
    for last in (0, len(a) // 3, len(a) - 1):  # the pass may stop after the slice passing it
      _, part, _ = large.host_counts(lg, valid, f, split, last)
      stop = np.searchsorted(want, last, "right")  # the first position passing last
      np.testing.assert_array_equal(part[: stop + 1], want[: stop + 1])
      assert (np.diff(part) >= 0).all()
      if split == 1 and last == 0:  # one slice counted, the rest not
        assert part[-1] < want[-1]
