"""`PairInputs`: files written by earlier versions load, save/load round-trips, and the
metric settings saved beside the data are the ones a sweep of them uses."""

import numpy as np
import pytest

from exfiqa_jax.metrics import make_pairset
from exfiqa_jax.metrics.inputs import PairInputs
from exfiqa_jax.metrics.pairset import METRIC_DEFAULTS


def _arrays(n=12, p=30, depth=3, seed=0):
  rng = np.random.default_rng(seed)
  return dict(
    ids=np.array([f"img{i}.png" for i in range(n)]),
    exit_scores=rng.normal(size=(n, depth)).astype(np.float32),
    a=rng.integers(0, n, p),
    b=rng.integers(0, n, p),
    labels=np.arange(p) % 2 == 0,
    comparison=rng.normal(size=p),
    cost=np.arange(1, depth + 1.0),
  )


def test_a_file_written_the_old_way_loads(tmp_path):
  """As `evaluation.run` wrote them: the arrays, then metrics_<key> float64 arrays."""
  z = _arrays()
  old = {
    **z,
    "metrics_fmrs": np.asarray((1e-2, 1e-3), np.float64),
    "metrics_edc_fmr": np.asarray(1e-2, np.float64),
    "metrics_edc_limits": np.asarray((0.2, 0.3), np.float64),
  }
  np.savez(tmp_path / "old.npz", **old)
  x = PairInputs.load(str(tmp_path / "old.npz"))
  for k, v in z.items():
    np.testing.assert_array_equal(getattr(x, k), v)
  assert x.labels.dtype == bool and x.depth == 3
  assert x.metrics == {"fmrs": (1e-2, 1e-3), "edc_fmr": 1e-2, "edc_limits": (0.2, 0.3)}
  assert x.metric_options() == x.metrics  # saved settings, when none are given
  given = {"fmrs": (0.1,), "edc_fmr": 0.1, "edc_limits": (0.25,)}
  assert x.metric_options(given) == given  # a config's settings win
  # and the pair set built from them is the one of those settings
  ps = x.pairset()
  want = make_pairset(*(z[k] for k in ("exit_scores", "a", "b", "labels", "comparison")),
                      fmrs=(1e-2, 1e-3), edc_fmr=1e-2, limits=(0.2, 0.3))  # fmt: skip
  for k in ("fmr_num", "fmr_den", "limits", "sa", "sb"):
    np.testing.assert_array_equal(np.asarray(getattr(ps, k)), np.asarray(getattr(want, k)))


def test_an_older_file_without_ids_or_metrics_loads_with_the_defaults(tmp_path):
  z = _arrays()
  del z["ids"]
  z["labels"] = z["labels"].astype(np.int64)  # 0/1 labels are accepted, read as booleans
  np.savez(tmp_path / "older.npz", **z)
  x = PairInputs.load(str(tmp_path / "older.npz"))
  assert x.ids is None and x.metrics is None
  assert x.metric_options() == METRIC_DEFAULTS
  np.testing.assert_array_equal(x.labels, z["labels"].astype(bool))


def test_save_writes_the_same_members_and_round_trips(tmp_path):
  z = _arrays(seed=3)
  x = PairInputs(**z).with_metrics({"fmrs": (0.05,), "edc_fmr": 0.05, "edc_limits": (0.2,)})
  x.save(str(tmp_path / "x.npz"))
  with np.load(tmp_path / "x.npz") as f:
    assert f.files == [*z, "metrics_fmrs", "metrics_edc_fmr", "metrics_edc_limits"]
    assert f["metrics_edc_fmr"].dtype == np.float64 and f["metrics_edc_fmr"].shape == ()
  y = PairInputs.load(str(tmp_path / "x.npz"))
  for k in z:
    np.testing.assert_array_equal(getattr(y, k), getattr(x, k))
  assert y.metrics == {"fmrs": (0.05,), "edc_fmr": 0.05, "edc_limits": (0.2,)}


def test_from_score_file_reads_the_pair_list(tmp_path):
  z = _arrays(seed=5)
  np.savez(tmp_path / "s.npz", paths=z["ids"], exit_scores=z["exit_scores"])
  with open(tmp_path / "p.txt", "w") as f:
    for i, j, lab, c in zip(z["a"], z["b"], z["labels"], z["comparison"], strict=True):
      f.write(f"{z['ids'][i]} {z['ids'][j]} {int(lab)} {float(c)!r}\n")
  x = PairInputs.from_score_file(str(tmp_path / "s.npz"), str(tmp_path / "p.txt"), z["cost"])
  for k, v in z.items():
    np.testing.assert_array_equal(getattr(x, k), v)
  assert x.metrics is None
  with pytest.raises(ValueError, match=r"s\.npz: 3 exits, but the cost has 2 entries"):
    PairInputs.from_score_file(str(tmp_path / "s.npz"), str(tmp_path / "p.txt"), [1.0, 2.0])
