"""The CPU backend's host areas (metrics/host.py): no class sort, rate cuts by selection,
an impostor window that doubles, the EDC over the reached genuines only. Every number
equals the compiled sort-based areas bit for bit and the loop references; tie-heavy
data, windows that cannot decide, EDC limits that no rate cut reaches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exfiqa_jax.fusion.engine import numpy_sort, plan, score_finish, score_pairs, score_prepare
from exfiqa_jax.fusion.rules import RULES
from exfiqa_jax.metrics import make_pairset
from exfiqa_jax.metrics.bits import index_bits
from exfiqa_jax.metrics.host import host_areas, host_pairs, levels
from exfiqa_jax.metrics.reference import edc_reference, edc_threshold, erc_reference

L, N, P = 6, 80, 400


def tie_data(seed):
  """Exit scores on a grid of 5 values (fused qualities tie often); comparison scores
  on a grid of 10 (long score-tie groups in both classes)."""
  rng = np.random.default_rng(seed)
  exits = rng.integers(0, 5, (N, L)).astype(np.float32) / 4
  a, b = rng.integers(0, N, (2, P))
  genuine = rng.random(P) < 0.4
  scores = (rng.integers(0, 10, P) + 3 * genuine).astype(np.float32) / 10
  return exits, a, b, genuine.astype(int), scores


def compiled_and_host(ps, rule, masks, window):
  """(the compiled areas: prepare, numpy sort, finish with every impostor; host_areas
  at `window`) of the variants masks [B, L] with depth weights, and the pair keys."""
  w = np.broadcast_to(np.arange(1, L + 1), masks.shape)
  p = plan(ps, "none", rule, w)
  with jax.enable_x64(True):
    args = (ps, p.fusion, jnp.asarray(masks), jnp.asarray(p.weights), RULES.index(rule))
    keys, g, i = score_prepare(*args, compress=p.compress)
    g, i = numpy_sort(g, i)
    want = score_finish(ps, keys, jnp.asarray(g), jnp.asarray(i), top=ps.imp_pos.shape[0])
    got = host_areas(host_pairs(ps), np.asarray(score_pairs(*args, compress=p.compress)), window)
  return [np.asarray(x) for x in want], got, np.asarray(keys)


@pytest.mark.parametrize("fmrs", [(0.05, 0.01), (0.5, 0.3)])
@pytest.mark.parametrize("limits", [(0.2, 0.3), (0.3, 0.99), (0.5, 1.0)])
def test_host_areas_equal_the_compiled_areas_bit_for_bit(fmrs, limits):
  data = tie_data(1)
  ps = make_pairset(*data, fmrs=fmrs, limits=limits)
  masks = ((np.arange(1, 1 << L)[:, None] >> np.arange(L)) & 1).astype(bool)
  for rule in RULES:
    for window in (1, 3, 64):  # 1 and 3: almost every variant widens its window
      want, got, _ = compiled_and_host(ps, rule, masks, window)
      for x, y in zip(want, got, strict=True):
        np.testing.assert_array_equal(x, y)  # NaN where NaN, and every bit


def test_host_areas_of_column_major_keys_are_those_of_row_major_keys():
  """A batch of pair keys gathered by columns is column-major (f[..., pair images]): the
  areas are those of the same keys row-major (the levels are updated in place through a
  flat view, which a column-major array would silently copy)."""
  ps = make_pairset(*tie_data(2), fmrs=(0.05, 0.01), limits=(0.2, 0.3))
  masks = ((np.arange(1, 1 << L)[:, None] >> np.arange(L)) & 1).astype(bool)
  want, _, keys = compiled_and_host(ps, "mean", masks, 64)
  column_major = np.asfortranarray(keys[:, : int(ps.count)])
  assert not column_major.flags.c_contiguous
  for x, y in zip(want, host_areas(host_pairs(ps), column_major), strict=True):
    np.testing.assert_array_equal(x, y)


def test_float_weight_sweeps_on_the_cpu_compile_no_pair_key_program(monkeypatch):
  """Float weights on the CPU backend: the pair keys in numpy (no program traced), the
  numbers of the compiled pair keys and of one-variant evaluations."""
  from exfiqa_jax.fusion import chunks, engine
  from exfiqa_jax.fusion.weights import simplex, sweep_weights

  ps = make_pairset(*tie_data(3), fmrs=(0.05, 0.01), limits=(0.2, 0.3))
  w = simplex(L, 9, seed=4)
  mask = [True, False, True, True, False, True]
  before = engine.score_pairs_keys._cache_size()
  got = sweep_weights(ps, w, mask=mask)
  assert engine.score_pairs_keys._cache_size() == before
  for j in (0, 4, 8):
    one = engine.evaluate_variant(ps, mask, "weighted", weights=w[j])
    np.testing.assert_array_equal(got["edc_area@0.2"][j], one["edc_area"][0])
    np.testing.assert_array_equal(got["erc_area@0.01"][j], one["erc_area"][1])
  monkeypatch.setattr(chunks, "host_sort", lambda: False)  # compiled keys, lax.sort
  monkeypatch.setattr(engine, "host_sort", lambda: False)
  for k, v in sweep_weights(ps, w, mask=mask).items():
    np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_dense_ranks_are_the_ranks_among_the_distinct_valid_values():
  """`dense_ranks` (one sort a row) against the plain definition: np.unique of a row's
  valid values, searched; invalid entries ranked among the valid ones; -0.0 == 0.0."""
  from exfiqa_jax.fusion.exact import dense_ranks

  rng = np.random.default_rng(6)
  f = rng.integers(-3, 4, (5, 40)).astype(np.float64) / 2
  f[f == 0] = rng.choice([0.0, -0.0], int((f == 0).sum()))
  f[:, 7] = 9.5  # above every valid value of its row, and invalid
  valid = rng.random(40) < 0.8
  valid[7] = False
  for v in (valid, np.ones(40, bool)):
    want = np.stack([np.searchsorted(np.unique(row[v]), row) for row in f])
    np.testing.assert_array_equal(dense_ranks(f, v), want)
  assert not dense_ranks(f, np.zeros(40, bool)).any()  # no valid value: every rank 0


def test_pair_ranked_float_keys_have_the_order_and_ties_of_image_ranked_keys():
  """The CPU's float-weight pair keys rank each pair's lower side among the pairs
  (`keyed(dense_ranks(pair_minima(f)))`), `pair_keys` of `dense_ranks` over the images
  the compiled route's: the same order and quality ties (-0.0 and 0.0 one value), so the
  same areas."""
  from exfiqa_jax.fusion.exact import dense_ranks
  from exfiqa_jax.metrics.host_curves import keyed, pair_keys, pair_minima

  ps = make_pairset(*tie_data(5), fmrs=(0.05, 0.01), limits=(0.2, 0.3))
  rng = np.random.default_rng(5)
  f = rng.integers(-3, 4, (7, ps.exits.shape[0])).astype(np.float64) / 2
  f[f == 0] = rng.choice([0.0, -0.0], int((f == 0).sum()))
  want = pair_keys(dense_ranks(f, np.asarray(ps.image_valid)), ps)
  got = keyed(dense_ranks(pair_minima(f, ps)), ps)
  shift = index_bits(ps.sa.shape[0])
  for x, y in zip(want, got, strict=True):
    np.testing.assert_array_equal(np.argsort(x), np.argsort(y))
    sx, sy = np.sort(x) >> shift, np.sort(y) >> shift
    np.testing.assert_array_equal(sx[1:] == sx[:-1], sy[1:] == sy[:-1])
  for x, y in zip(host_areas(host_pairs(ps), want), host_areas(host_pairs(ps), got), strict=True):
    np.testing.assert_array_equal(x, y)


def test_host_areas_equal_the_loop_references_on_tie_heavy_data():
  data = tie_data(2)
  exits, a, b, genuine, scores = data
  fmrs, limits = (0.05, 0.02), (0.2, 0.3)
  ps = make_pairset(*data, fmrs=fmrs, limits=limits)
  masks = np.array([[1, 0, 0, 0, 0, 0], [1, 1, 0, 1, 0, 1], [0, 0, 1, 1, 1, 1]], bool)
  thr = edc_threshold(scores, genuine, 1e-3)
  for rule in ("mean", "min", "median"):
    _, got, keys = compiled_and_host(ps, rule, masks, 1)
    shift = max(1, (ps.sa.shape[0] - 1).bit_length())
    sid = np.asarray(ps.sid)[: len(a)]
    for v in range(len(masks)):
      pq = np.empty(len(a), np.int64)
      pq[sid] = keys[v, : len(a)] >> shift  # the variant's exact pair qualities, by pair
      for f, fmr in enumerate(fmrs):
        _, area = erc_reference(pq, scores, genuine, fmr)
        np.testing.assert_allclose(got[0][v, f], area, rtol=1e-6, atol=1e-7)
      _, areas, best = edc_reference(pq, scores, genuine, thr, limits)
      np.testing.assert_allclose(got[1][v], areas, rtol=1e-6, atol=1e-7)
      np.testing.assert_allclose(got[2][v], best, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("nb", [None, 4, 256])
def test_levels_find_the_cuts_of_a_sort_and_each_keys_rate(nb):
  """Cuts and levels against a full sort: random keys, few buckets (buckets holding
  many pairs and several cuts), fewer pairs than rates, keys near 2^62 (the holders'
  composite does not fit one int64: the lexsort)."""
  rng = np.random.default_rng(3)
  # 937 pairs; below 20 pairs several rates share one cut (one sorted place)
  for high, count in [(1 << 20, 937), (1 << 62, 937), (1 << 20, 4), (1 << 20, 13), (1 << 12, 19)]:
    keys = np.stack([rng.choice(high, 1000, replace=False) for _ in range(6)])
    # the rest: padding the cuts must not read
    keys[:, count:] = np.iinfo(np.int64).max
    cuts, level = levels(keys, count, nb)
    srt = np.sort(keys[:, :count], axis=1)
    want = srt[:, (np.arange(20) * count) // 20]
    np.testing.assert_array_equal(cuts, want)
    for r in range(len(keys)):
      lv = np.searchsorted(want[r], keys[r, :count], "right") - 1
      np.testing.assert_array_equal(level[r], lv)


@pytest.mark.parametrize("rule", RULES)
def test_host_pair_keys_from_side_tables_equal_the_compiled_keys(rule, monkeypatch):
  from exfiqa_jax.fusion import sides as side_module
  from exfiqa_jax.fusion.sides import pair_sides, side_keys

  ps = make_pairset(*tie_data(4), fmrs=(0.05,), limits=(0.3,))
  masks = ((np.arange(1, 1 << L)[:, None] >> np.arange(L)) & 1).astype(bool)
  w = np.broadcast_to(np.arange(1, L + 1), masks.shape)
  p = plan(ps, "none", rule, w)
  sides = pair_sides(ps, p, rule)
  assert sides is not None
  with jax.enable_x64(True):
    args = (ps, p.fusion, jnp.asarray(masks), jnp.asarray(p.weights), RULES.index(rule))
    want = np.asarray(score_pairs(*args, compress=p.compress))[:, : int(ps.count)]
  np.testing.assert_array_equal(side_keys(sides, masks), want)
  # codes out of order (no runs of one high half): the gathered rows
  perm = np.random.default_rng(3).permutation(len(masks))
  np.testing.assert_array_equal(side_keys(sides, masks[perm]), want[perm])
  # runs cut at every change of the high half and at every RUN_ROWS variants
  monkeypatch.setattr(side_module, "RUN_ROWS", 3)
  for lo, hi in ((5, 30), (0, len(masks)), (9, 10)):
    np.testing.assert_array_equal(side_keys(sides, masks[lo:hi]), want[lo:hi])


def test_host_median_keys_equal_the_compiled_keys_on_every_subset_of_12_exits():
  """The median's position-mask tables against the compiled median (`fuse_integers`)
  on all 4,095 subsets of 12 exits (odd and even sizes), exit scores on a grid of 4
  values (most images tie inside their subsets), padding images and pairs."""
  from exfiqa_jax.fusion.sides import MedianSides, pair_sides, side_keys

  rng = np.random.default_rng(5)
  depth, n, p = 12, 37, 150
  exits = rng.integers(0, 4, (n, depth)).astype(np.float32) / 3
  exits[:5] = np.round(rng.normal(size=(5, depth)), 2)  # a few without ties
  a, b = rng.integers(0, n, (2, p))
  genuine = rng.random(p) < 0.4
  scores = rng.integers(0, 10, p).astype(np.float32) / 10
  ps = make_pairset(exits, a, b, genuine.astype(int), scores, fmrs=(0.05,), limits=(0.3,))
  assert ps.exits.shape[0] > n and ps.sa.shape[0] > p  # padding images and pairs
  masks = ((np.arange(1, 1 << depth)[:, None] >> np.arange(depth)) & 1).astype(bool)
  w = np.broadcast_to(np.arange(1, depth + 1), masks.shape)
  pl = plan(ps, "none", "median", w)
  sides = pair_sides(ps, pl, "median")
  assert isinstance(sides, MedianSides)
  with jax.enable_x64(True):
    for lo in range(0, len(masks), 1024):
      mk = masks[lo : lo + 1024]
      args = (
        ps,
        pl.fusion,
        jnp.asarray(mk),
        jnp.asarray(pl.weights[lo : lo + 1024]),
        RULES.index("median"),
      )
      want = np.asarray(score_pairs(*args, compress=pl.compress))[:, :p]
      np.testing.assert_array_equal(side_keys(sides, mk), want)


@pytest.mark.filterwarnings("ignore:exit scores span more than")
@pytest.mark.parametrize("rule", ["mean", "median"])
def test_sweep_of_rank_compressed_keys_equals_one_variant_evaluations(rule):
  """Exit scores spanning 15 decades: the keys need rank compression, so the sweep's
  CPU path has no numpy pair keys and runs the compiled prepare on the Fusion that
  `plan(host=True)` kept in numpy; every row equals `evaluate_variant` bit for bit."""
  from exfiqa_jax.fusion.chunks import score_variants
  from exfiqa_jax.fusion.engine import evaluate_variant
  from exfiqa_jax.fusion.sides import pair_sides

  rng = np.random.default_rng(6)
  depth, n, p = 4, 50, 240
  exits = (10.0 ** rng.uniform(-9, 6, (n, depth))).astype(np.float32)
  a, b = rng.integers(0, n, (2, p))
  genuine = (rng.random(p) < 0.4).astype(int)
  ps = make_pairset(exits, a, b, genuine, rng.random(p), fmrs=(0.05, 0.01), limits=(0.2, 0.3))
  masks = ((np.arange(1, 1 << depth)[:, None] >> np.arange(depth)) & 1).astype(bool)
  w = np.broadcast_to(np.arange(1, depth + 1), masks.shape)
  p_host = plan(ps, "none", rule, w, host=True)
  assert p_host.compress and pair_sides(ps, p_host, rule) is None
  assert isinstance(p_host.fusion.columns, np.ndarray)
  erc, edc, best = score_variants(ps, masks, w, rule)
  for v in range(len(masks)):
    one = evaluate_variant(ps, masks[v], rule)
    np.testing.assert_array_equal(erc[v], one["erc_area"])
    np.testing.assert_array_equal(edc[v], one["edc_area"])
    np.testing.assert_array_equal(best[v], one["edc_best"])
