"""Adaptive evaluation: disjoint splits, exact metrics against the static sweep and references."""

from fractions import Fraction

import numpy as np
import pytest

from exfiqa_jax.adaptive import calibrate as cal
from exfiqa_jax.adaptive import evaluate as ev
from exfiqa_jax.adaptive import policy as P
from exfiqa_jax.adaptive.study import cheapest_within, run_study
from exfiqa_jax.fusion.subsets import code_of
from exfiqa_jax.fusion.sweep import sweep
from exfiqa_jax.metrics import make_pairset
from exfiqa_jax.metrics.inputs import PairInputs
from exfiqa_jax.metrics.reference import edc_reference, edc_threshold, erc_reference
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.flops import exit_gflops

DEPTH, STAGES = 12, (3, 6, 9, 12)
FMRS, EDC_FMR, LIMITS = (0.05, 0.01), 0.05, (0.2, 0.3)
COST = np.array(exit_gflops(ViTConfig()))


def _inputs(pairs=400, seed=0):
  """Pairs owning their images (as in the verification files): images 2p, 2p + 1."""
  rng = np.random.default_rng(seed)
  n = 2 * pairs
  true = rng.normal(size=n)
  exits = true[:, None] * np.linspace(0.3, 1, DEPTH) + rng.normal(size=(n, DEPTH)) * np.linspace(
    1, 0.2, DEPTH
  )
  a = np.arange(0, n, 2)
  b = a + 1
  labels = np.arange(pairs) % 2 == 0
  comp = np.where(labels, 0.5 + 0.3 * np.minimum(true[a], true[b]), 0.0)
  comp = np.round(comp + rng.normal(size=pairs) * 0.2, 4)
  return dict(
    exit_scores=exits.astype(np.float32), a=a, b=b, labels=labels, comparison=comp, cost=COST
  )


def _pairset(z, pairs):
  return make_pairset(
    z["exit_scores"], z["a"][pairs], z["b"][pairs], z["labels"][pairs], z["comparison"][pairs],
    fmrs=FMRS, edc_fmr=EDC_FMR, limits=LIMITS,
  )  # fmt: skip


def test_split_is_disjoint_seeded_and_drops_pairs_sharing_images():
  z = _inputs(300)
  sp = ev.split_pairs(z["a"], z["b"], 600, 0.4, seed=3)
  cal_p, eval_p = sp["calibration"], sp["evaluation"]
  assert len(cal_p) == 120 and len(eval_p) == 180 and not len(sp["dropped"])
  assert not set(cal_p) & set(eval_p) and set(cal_p) | set(eval_p) == set(range(300))
  assert set(sp["calibration_images"]) == set(z["a"][cal_p]) | set(z["b"][cal_p])
  assert not set(sp["calibration_images"]) & (set(z["a"][eval_p]) | set(z["b"][eval_p]))
  again = ev.split_pairs(z["a"], z["b"], 600, 0.4, seed=3)
  assert all(np.array_equal(sp[k], again[k]) for k in sp)
  assert not np.array_equal(ev.split_pairs(z["a"], z["b"], 600, 0.4, 4)["calibration"], cal_p)
  # pairs that reuse images (as IJB-C templates do): shared ones are left out
  rng = np.random.default_rng(0)
  a, b = rng.integers(0, 80, (2, 200))
  sp = ev.split_pairs(a, b, 80, 0.5, 0)
  seen = set(a[sp["calibration"]]) | set(b[sp["calibration"]])
  assert len(sp["dropped"]) > 0
  assert all(a[p] in seen or b[p] in seen for p in sp["dropped"])
  assert not seen & (set(a[sp["evaluation"]]) | set(b[sp["evaluation"]]))
  with pytest.raises(ValueError, match=r"calibration fraction must lie in \(0, 1\), got 1.0"):
    ev.split_pairs(a, b, 80, 1.0)


def _static_row(ps, subset_exits):
  mask = np.zeros((1, DEPTH), bool)
  mask[0, :subset_exits] = True
  t = sweep(ps, ("weighted",), ("none",), COST, masks=mask)
  assert t["subset"][0] == code_of(mask)[0]
  return {k: v[0] for k, v in t.items()}


def test_full_knob_reproduces_the_static_depth_weighted_row_bit_for_bit():
  z = _inputs()
  sp = ev.split_pairs(z["a"], z["b"], len(z["exit_scores"]), 0.5, 0)
  ps = _pairset(z, sp["evaluation"])
  images = ev.pair_images(z["a"], z["b"], sp["evaluation"], len(z["exit_scores"]))
  calib = z["exit_scores"][sp["calibration_images"]]
  full = _static_row(ps, DEPTH)
  cols = [k for k in full if "@" in k]
  for name in P.POLICIES:
    p = cal.calibrate(name, calib, STAGES, COST)[0]
    assert p.never_stops_early
    row = ev.evaluate_policy(ps, images, p, COST)
    assert row["gflops"] == full["gflops"] == COST[-1]
    for c in cols:
      assert np.float32(row[c]).tobytes() == np.float32(full[c]).tobytes(), (name, c)
  # every image stopping at exit 3 is the static weighted fusion of exits {1, 2, 3}
  p3 = P.Policy("delta", 1e30, STAGES, DEPTH, {"scale": 1.0})
  row = ev.evaluate_policy(ps, images, p3, COST)
  three = _static_row(ps, 3)
  assert row["gflops"] == COST[2] and row["stopped_early"] == 1.0
  for c in cols:
    assert np.float32(row[c]).tobytes() == np.float32(three[c]).tobytes(), c


def _plain_metrics(z, pairs, stop):
  """ERC/EDC of the depth-weighted fusion over each image's exits 1..stop, from exact
  fractions and the plain references of exfiqa_jax.metrics.reference."""
  x = z["exit_scores"]
  fused = [
    sum(Fraction(float(x[n, i])) * (i + 1) for i in range(k)) / (k * (k + 1) // 2)
    for n, k in enumerate(stop)
  ]
  rank = {v: r for r, v in enumerate(sorted(set(fused)))}
  q = np.array([rank[v] for v in fused], float)
  pq = np.minimum(q[z["a"][pairs]], q[z["b"][pairs]])
  s, g = z["comparison"][pairs], z["labels"][pairs]
  erc = [erc_reference(pq, s, g, f)[1] for f in FMRS]
  _, edc, _ = edc_reference(pq, s, g, edc_threshold(s, g, EDC_FMR), LIMITS)
  return erc, edc


@pytest.mark.parametrize("name,knob", [("delta", 0.2), ("band", 0.15), ("gate", 0.5)])
def test_mixed_stops_match_plain_references(name, knob):
  z = _inputs(300, seed=5)
  n = len(z["exit_scores"])
  sp = ev.split_pairs(z["a"], z["b"], n, 0.5, 1)
  e = sp["evaluation"]
  p = cal.calibrate(name, z["exit_scores"][sp["calibration_images"]], STAGES, COST, (knob,))[0]
  stop = P.stop_exits(p, z["exit_scores"])
  images = ev.pair_images(z["a"], z["b"], e, n)
  assert 0 < (stop[images] < DEPTH).mean() < 1  # really mixed
  row = ev.evaluate_policy(_pairset(z, e), images, p, COST)
  erc, edc = _plain_metrics(z, e, stop)
  for f, want in zip(FMRS, erc, strict=True):
    assert row[f"erc_area@{f:g}"] == pytest.approx(want, abs=1e-6)
  for limit, want in zip(LIMITS, edc, strict=True):
    assert row[f"edc_area@{limit:g}"] == pytest.approx(want, abs=1e-6)
  assert row["gflops"] == pytest.approx(np.mean(COST[stop[images] - 1]), rel=1e-12)
  assert row["mean_blocks"] == pytest.approx(np.mean(stop[images]))


def test_calibration_reads_only_calibration_images():
  z = _inputs(200)
  n = len(z["exit_scores"])
  sp = ev.split_pairs(z["a"], z["b"], n, 0.5, 0)
  knobs = {"delta": (0.0, 0.1), "band": (0.1,), "gate": (0.5,)}
  base = run_study(PairInputs(**z), stages=STAGES, knobs=knobs, rules=())
  assert base.split["calibration_pairs"] + base.split["evaluation_pairs"] == 200
  held = np.setdiff1d(np.arange(n), sp["calibration_images"])
  moved = dict(z, exit_scores=z["exit_scores"].copy())
  moved["exit_scores"][held] *= 3.0  # evaluation images only
  other = run_study(
    PairInputs(**moved), stages=STAGES, knobs={"delta": (0.0, 0.1), "band": (0.1,), "gate": (0.5,)}
  )
  assert [p.calibration for p in other.policies] == [p.calibration for p in base.policies]
  assert [p.gflops for p in other.policies] == [p.gflops for p in base.policies]
  moved["exit_scores"][sp["calibration_images"][:5]] += 1.0
  third = run_study(
    PairInputs(**moved),
    stages=STAGES,
    knobs={"delta": (0.0,), "band": (0.1,), "gate": ()},
    rules=(),
  )
  assert third.policies[0].calibration != base.policies[0].calibration


def test_calibration_numbers_against_plain_formulas():
  z = _inputs(200)
  x = z["exit_scores"]
  fusion = np.array([[sum((i + 1) * float(r[i]) for i in range(k)) / (k * (k + 1) / 2)
                      for k in range(1, DEPTH + 1)] for r in x])  # fmt: skip
  (d,) = cal.calibrate("delta", x, STAGES, COST, (0.1,))
  assert d.calibration["scale"] == pytest.approx(np.std(fusion[:, -1]), rel=1e-12)
  (b,) = cal.calibrate("band", x, STAGES, COST, (0.1,))
  for s, k in enumerate(STAGES):
    assert b.calibration["lo"][s] == pytest.approx(np.quantile(fusion[:, k - 1], 0.1), rel=1e-12)
    assert b.calibration["hi"][s] == pytest.approx(np.quantile(fusion[:, k - 1], 0.9), rel=1e-12)
  (g,) = cal.calibrate("gate", x, STAGES, COST, (0.5,))
  edges = np.quantile(fusion[:, -1], np.arange(1, 10) / 10)
  bucket = np.array([[int(np.sum(edges <= v)) for v in row] for row in fusion])
  for s, k in enumerate(STAGES):
    label = [
      all(bucket[n, j] == bucket[n, k - 1] for j in range(k - 1, DEPTH)) for n in range(len(x))
    ]
    assert g.calibration["positive"][s] == pytest.approx(np.mean(label))
  # the fitted gate ranks its own positives above its negatives (better than chance)
  f = (P.gate_features(x, 3) - g.calibration["mean"][0]) / g.calibration["std"][0]
  z0 = f @ np.asarray(g.calibration["w"][0]) + g.calibration["b"][0]
  lab = np.array([bucket[n, 2] == bucket[n, -1] and (bucket[n, 2:] == bucket[n, 2]).all()
                  for n in range(len(x))])  # fmt: skip
  assert z0[lab].mean() > z0[~lab].mean()
  stop = P.stop_exits(g, x)
  assert g.gflops == pytest.approx(np.mean(COST[stop - 1]), rel=1e-12)


def test_cheapest_within_picks_least_compute_within_tolerance():
  rows = [
    {"policy": "delta", "gflops": 10.0, "erc_area@0.1": 0.100},
    {"policy": "delta", "gflops": 6.0, "erc_area@0.1": 0.1009},
    {"policy": "delta", "gflops": 3.0, "erc_area@0.1": 0.1011},
    {"policy": "band", "gflops": 2.0, "erc_area@0.1": float("nan")},
    {"policy": "band", "gflops": 4.0, "erc_area@0.1": 0.099},
  ]
  best = cheapest_within(rows, {"erc_area@0.1": 0.1}, "erc_area@0.1")
  assert best["delta"]["gflops"] == 6.0 and best["band"]["gflops"] == 4.0


def test_cheapest_within_skips_a_knob_with_any_nan_area():
  """The cheapest knob within 1% of the ERC area is never one whose other areas (EDC,
  another FMR) are NaN (issue 26): the next cheapest finite one is taken."""
  nan = float("nan")
  rows = [
    {"policy": "delta", "gflops": 2.0, "erc_area@0.1": 0.100, "edc_area@0.2": nan},
    {"policy": "delta", "gflops": 3.0, "erc_area@0.1": 0.100, "erc_area@0.01": nan},
    {"policy": "delta", "gflops": 5.0, "erc_area@0.1": 0.1005, "edc_area@0.2": 0.3},
    {"policy": "band", "gflops": 1.0, "erc_area@0.1": 0.09, "edc_area@0.2": nan},
  ]
  best = cheapest_within(rows, {"erc_area@0.1": 0.1}, "erc_area@0.1")
  assert best["delta"]["gflops"] == 5.0
  assert "band" not in best


def test_scores_of_a_policy_run_are_refused():
  z = _inputs(50)
  z["exit_scores"][[3, 7], 9:] = np.nan  # exits a policy run did not compute
  with pytest.raises(
    ValueError, match="exit scores of 2 images hold NaN or inf \\(first: image 3\\)"
  ):
    run_study(PairInputs(**z), stages=STAGES)
