"""Adaptive policies: stop rules, qualities, files and budgets against plain per-image loops."""

import json
import math

import numpy as np
import pytest

from exfiqa_jax.adaptive import calibrate as cal
from exfiqa_jax.adaptive import policy as P

DEPTH, STAGES = 12, (3, 6, 9, 12)


def _exits(n=300, seed=0):
  rng = np.random.default_rng(seed)
  true = rng.normal(size=n)
  noise = rng.normal(size=(n, DEPTH)) * np.linspace(1.0, 0.1, DEPTH)
  return (true[:, None] + noise).astype(np.float32)


def _fusion(row, k):
  """Plain depth-weighted fusion of exits 1..k of one image (float64, exit order)."""
  s = 0.0
  for i in range(1, k + 1):
    s += i * float(row[i - 1])
  return s / (k * (k + 1) / 2)


def _stops_plain(name, knob, c, row, k):
  """The rule of docs/protocol.md §10 for one image after exit k, written out."""
  if k == DEPTH:
    return True
  if k not in STAGES:
    return False
  s = STAGES.index(k)
  if name == "delta":
    return knob > 0 and k > 1 and abs(_fusion(row, k) - _fusion(row, k - 1)) < knob * c["scale"]
  if name == "band":
    if knob == 0:
      return False
    q = _fusion(row, k)
    return q < c["lo"][s] or q > c["hi"][s]
  if knob >= 1:
    return False
  xs = [float(v) for v in row[:k]]
  mean = sum(xs) / k
  feats = [
    _fusion(row, k),
    _fusion(row, k) - _fusion(row, k - 1) if k > 1 else 0.0,
    xs[-1],
    xs[-1] - xs[-2] if k > 1 else 0.0,
    math.sqrt(sum((v - mean) ** 2 for v in xs) / k),
  ]
  z = c["b"][s]
  for f, m, sd, w in zip(feats, c["mean"][s], c["std"][s], c["w"][s], strict=True):
    z += (f - m) / sd * w
  return 1 / (1 + math.exp(-z)) > knob


def _stop_plain(p, row):
  for k in range(1, DEPTH + 1):
    if _stops_plain(p.name, p.knob, p.calibration, row, k):
      return k
  raise AssertionError("never stopped")


def test_quality_is_the_depth_weighted_fusion_of_the_exits_run():
  x = _exits(50)
  k = np.random.default_rng(1).integers(1, DEPTH + 1, 50)
  x_nan = x.copy()
  for i, ki in enumerate(k):
    x_nan[i, ki:] = np.nan  # exits not run
  p = P.Policy("delta", 0.1, STAGES, DEPTH, {"scale": 1.0})
  got = p.quality(x_nan, k)
  want = np.array([_fusion(r, int(ki)) for r, ki in zip(x, k, strict=True)], np.float32)
  assert got.dtype == np.float32 and np.array_equal(got, want)
  full = p.quality(x, DEPTH)
  assert np.array_equal(full, np.array([_fusion(r, DEPTH) for r in x], np.float32))


@pytest.mark.parametrize(
  "name,knobs", [("delta", (0.0, 0.05, 0.3)), ("band", (0.0, 0.1, 0.4)), ("gate", (1.0, 0.6, 0.2))]
)
def test_stop_exits_match_a_plain_loop_over_images(name, knobs):
  calib, test = _exits(400, 0), _exits(200, 7)
  pols = cal.calibrate(name, calib, STAGES, np.arange(1.0, DEPTH + 1), knobs)
  stopped_early = 0
  for p in pols:
    got = P.stop_exits(p, test)
    want = np.array([_stop_plain(p, r) for r in test])
    assert np.array_equal(got, want), (name, p.knob)
    assert set(np.unique(got)) <= set(STAGES)
    stopped_early += int((got < DEPTH).sum())
  assert (P.stop_exits(pols[0], test) == DEPTH).all()  # the first knob is the full pass
  assert stopped_early > 0  # the others really stop images


def test_stop_is_true_at_the_depth_and_false_between_stages():
  x = _exits(20)
  p = P.Policy("band", 0.5, STAGES, DEPTH, {"lo": [1e9] * 4, "hi": [1e9] * 4})
  assert p.stop(x, 3).all()  # below every lo
  assert not p.stop(x, 4).any() and not p.stop(x[:, :5], 5).any()  # not stages
  assert p.stop(x, DEPTH).all()
  never = P.Policy("gate", 1.0, STAGES, DEPTH, {})
  assert not never.stop(x, 3).any() and never.never_stops_early
  with pytest.raises(ValueError, match=r"stop needs exits \[b, >= 6\]"):
    p.stop(x[:, :3], 6)


def test_bad_policies_are_refused_in_one_line():
  with pytest.raises(ValueError, match="unknown policy 'fast'; policies are delta, band, gate"):
    P.Policy("fast", 0.1, STAGES, DEPTH, {})
  with pytest.raises(ValueError, match=r"stages must increase within 1..12 and end at the depth"):
    P.Policy("delta", 0.1, (3, 6), DEPTH, {})
  with pytest.raises(ValueError, match=r"knob 0.7 outside \[0.0, 0.5\]"):
    cal.calibrate("band", _exits(10), STAGES, np.ones(DEPTH), (0.7,))
  assert P.default_stages(12) == (3, 6, 9, 12) and P.default_stages(4, 2) == (2, 4)


GATE = {"mean": [[0.0] * 5] * 4, "std": [[1.0] * 5] * 4, "w": [[0.0] * 5] * 4, "b": [0.0] * 4}


def _sweep():
  return [
    P.Policy("delta", 0.0, STAGES, DEPTH, {"scale": 1.0}, 11.5),
    P.Policy("delta", 0.01, STAGES, DEPTH, {"scale": 1.0}, 11.5),
    P.Policy("delta", 0.1, STAGES, DEPTH, {"scale": 1.0}, 8.25),
    P.Policy("delta", 1.0, STAGES, DEPTH, {"scale": 1.0}, 3.0),
    P.Policy("gate", 1.0, STAGES, DEPTH, GATE, 11.5),
    P.Policy("gate", 0.5, STAGES, DEPTH, GATE, 5.0),
  ]


def test_save_load_and_budget(tmp_path):
  path = str(tmp_path / "policies.json")
  P.save(_sweep(), path, depth=DEPTH)
  doc = json.load(open(path))
  assert doc["format"] == P.FORMAT and doc["version"] == P.VERSION and doc["depth"] == DEPTH
  back = P.load_sweep(path)
  assert back == _sweep()
  assert P.for_budget(path, 100.0, "delta").knob == 0.0  # ties at 11.5: the full pass
  assert P.for_budget(path, 11.5, "delta").never_stops_early
  assert P.for_budget(path, 11.49, "delta").knob == 0.1
  assert P.for_budget(_sweep(), 4.0, "delta").knob == 1.0
  assert P.for_budget(path, 6.0, "gate").knob == 0.5
  assert P.for_budget(path, 9.0).gflops == 8.25  # any policy
  P.save(_sweep()[2], str(tmp_path / "one.json"))
  assert P.load(str(tmp_path / "one.json")) == _sweep()[2]
  with pytest.raises(ValueError, match=r"budget 2 GFLOPs is below the cheapest calibrated knob"):
    P.for_budget(path, 2.0, "delta")
  with pytest.raises(ValueError, match="budget must be a positive number of GFLOPs, got -1"):
    P.for_budget(path, -1, "delta")
  with pytest.raises(ValueError, match="no policy 'band' in the sweep"):
    P.for_budget(path, 10.0, "band")
  with pytest.raises(ValueError, match="holds 6 policies, need exactly one"):
    P.load(path)


@pytest.mark.parametrize(
  "content,message",
  [
    (None, "no such policy file"),
    ("{not json", r"not a policy file \(JSONDecodeError\)"),
    ('{"format": "other"}', "not a policy file \\(no format"),
    (json.dumps({"format": P.FORMAT, "version": 99}), "policy file version 99, this exfiqa reads"),
    (json.dumps({"format": P.FORMAT, "version": 1, "policies": []}), "holds no policies"),
    (
      json.dumps({"format": P.FORMAT, "version": 1, "policies": [{"name": "delta"}]}),
      "policy 0 is malformed: 'knob'",
    ),
    (
      json.dumps(
        {
          "format": P.FORMAT,
          "version": 1,
          "policies": [{"name": "x", "knob": 0, "stages": [12], "depth": 12, "calibration": {}}],
        }
      ),
      "policy 0 is malformed: unknown policy 'x'",
    ),
  ],
)
def test_bad_policy_files_name_the_file(tmp_path, content, message):
  path = tmp_path / "p.json"
  if content is not None:
    path.write_text(content)
  with pytest.raises(ValueError, match=message) as e:
    P.load_sweep(str(path))
  assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_mean_gflops_counts_the_exits_run():
  cost = np.array([1.0, 2.0, 3.5, 4.0])
  stop = np.array([1, 4, 4, 2, 4])
  assert P.mean_gflops(stop, cost) == pytest.approx(np.mean(cost[stop - 1]), rel=1e-15)
  assert P.mean_gflops(np.full(7, 3), cost) == 3.5  # exactly the exit's cost


@pytest.mark.parametrize(
  "name,calibration,message",
  [
    ("delta", {}, "calibration needs a scale >= 0"),
    ("band", {"lo": [0.1, None], "hi": [None] * 4}, "lo and hi: 4 band edges"),
    ("gate", {"mean": [[0.0] * 5] * 4, "std": [[1.0] * 5] * 4, "w": [[0.0] * 4] * 4, "b": [0] * 4},
     "mean, std, w: 4 lists of 5 numbers each"),
  ],
)  # fmt: skip
def test_policy_files_with_incomplete_calibration_are_refused(tmp_path, name, calibration, message):
  path = str(tmp_path / "p.json")
  P.save(P.Policy(name, 0.5 if name != "delta" else 0.1, STAGES, DEPTH, calibration, 1.0), path)
  with pytest.raises(ValueError, match=f"policy 0 is malformed: policy {name} knob .*{message}"):
    P.load_sweep(path)
  good = cal.calibrate(name, _exits(50), STAGES, np.ones(DEPTH), (0.1,))
  P.save(good, path)
  assert P.load_sweep(path) == good
