"""Progress bars name what they count (issue 26): `evaluate` showed one unlabelled bar,
one `scoring:` bar and identical `sweep:` bars; a job's bars now name the dataset, the
models scored and the FR model of each sweep."""

from __future__ import annotations

import numpy as np

from exfiqa_jax import data
from exfiqa_jax.data.sources import ArraySource
from exfiqa_jax.data.synthetic import make_verification_bin
from exfiqa_jax.fusion.sweep import sweep
from exfiqa_jax.metrics import make_pairset
from exfiqa_jax.scoring.score import score
from tests.score_helpers import faces, random_variables


def test_scoring_sweep_and_build_bars_carry_their_label(tmp_path, capsys):
  x = faces(3)
  s = score(random_variables(), ArraySource(x, np.array(["a", "b", "c"])), progress="scoring lfw")
  assert s.exit_scores.shape == (3, 3)
  assert "scoring lfw: 100%" in capsys.readouterr().err
  rng = np.random.default_rng(0)
  ps = make_pairset(
    rng.normal(size=(20, 3)), np.arange(10), np.arange(10, 20), np.arange(10) % 2 == 0,
    rng.normal(size=10), fmrs=(0.1,), edc_fmr=0.1, limits=(0.2,),
  )  # fmt: skip
  sweep(ps, ("mean",), ("none",), [1.0, 2.0, 3.0], progress="sweep lfw/ArcFace")
  assert "sweep lfw/ArcFace: 100%" in capsys.readouterr().err
  make_verification_bin(str(tmp_path / "bins" / "lfw.bin"), num_pairs=4)
  data.build(
    "verification_bin",
    "lfw",
    str(tmp_path / "bins"),
    str(tmp_path / "tfds"),
    progress="building lfw",
  )
  assert "building lfw: 100%" in capsys.readouterr().err
