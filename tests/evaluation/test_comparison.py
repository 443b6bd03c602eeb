import numpy as np
import pytest

from exfiqa_jax import apply, preprocess
from exfiqa_jax.data import ArraySource, Dataset, Pairs, Templates
from exfiqa_jax.evaluation.comparison import (
  cosine,
  load_embeddings,
  template_embeddings,
  template_scores,
)
from exfiqa_jax.evaluation.inputs import benchmark_inputs
from tests.score_helpers import faces, random_variables


def _cos_loop(x, a, b):
  return np.array(
    [
      np.dot(x[i], x[j]) / np.linalg.norm(x[i]) / np.linalg.norm(x[j])
      for i, j in zip(a, b, strict=True)
    ]
  )


def test_cosine_by_hand_and_blocks():
  x = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]])
  np.testing.assert_allclose(
    cosine(x, np.array([0, 0, 1]), np.array([1, 2, 2])), [2**-0.5, 0.0, -(2**-0.5)], atol=1e-15
  )
  rng = np.random.default_rng(0)
  y = rng.standard_normal((20, 8)).astype(np.float32)
  a, b = rng.integers(0, 20, 50), rng.integers(0, 20, 50)
  np.testing.assert_allclose(
    cosine(y, a, b, block=7), _cos_loop(y.astype(np.float64), a, b), atol=1e-12
  )
  with pytest.raises(ValueError, match="all-zero row"):
    cosine(np.zeros((2, 3)), np.array([0]), np.array([1]))


def test_load_embeddings_folder_and_matrix(tmp_path):
  ids = np.array(["p1_0", "p2_0", "1.jpg"])
  folder = tmp_path / "XQLFW_ArcFace"
  folder.mkdir()
  vecs = np.arange(12, dtype=np.float32).reshape(3, 4)
  np.save(folder / "p1_0.npy", vecs[0])
  np.save(folder / "p2_0.npy", vecs[1][None])  # [1, D] as some extractors write
  np.save(folder / "1.npy", vecs[2])  # looked up by the id's stem
  np.testing.assert_array_equal(load_embeddings(str(folder), ids), vecs)
  np.save(tmp_path / "m.npy", vecs)
  np.testing.assert_array_equal(load_embeddings(str(tmp_path / "m.npy"), ids), vecs)
  with pytest.raises(ValueError, match=r"m\.npy: expected an embedding matrix \[2, D\]"):
    load_embeddings(str(tmp_path / "m.npy"), ids[:2])
  with pytest.raises(FileNotFoundError, match=r"zz\.npy: no embedding for image 'zz'"):
    load_embeddings(str(folder), np.array(["p1_0", "zz"]))


def test_template_aggregation_by_hand():
  x = np.array([[1.0, 0], [3, 0], [0, 4], [2, 2], [5, 5]])
  of_image = np.array([0, 0, 0, 1, 1])
  media = np.array([7, 7, 8, 7, 9])  # media ids repeat across templates
  t = template_embeddings(x, of_image, media, 2)
  # template 0: media 7 mean (2, 0), media 8 (0, 4) -> (1, 2); template 1: (2,2), (5,5) -> mean
  np.testing.assert_allclose(t, [[1.0, 2.0], [3.5, 3.5]])
  q = np.array([[1.0, 2], [2, 4], [3, 6], [4, 8], [6, 10]])
  np.testing.assert_allclose(template_scores(q, of_image, 2, "mean"), [[2, 4], [5, 9]])
  # upstream's rule, the default: the worst image per exit (min; max when higher is worse)
  np.testing.assert_array_equal(template_scores(q, of_image, 2), [[1, 2], [4, 8]])
  q2 = np.array([[1.0, 9], [2, 4], [3, 6], [4, 8], [6, 10]])  # exits need not agree
  np.testing.assert_array_equal(template_scores(q2, of_image, 2), [[1, 4], [4, 8]])
  np.testing.assert_array_equal(
    template_scores(q2, of_image, 2, higher_is_better=False), [[3, 9], [6, 10]]
  )
  for rule in ("min", "mean"):
    with pytest.raises(ValueError, match="segment 2 of 3 has no members"):
      template_scores(q, of_image, 3, rule)
  with pytest.raises(ValueError, match="template quality rule 'median' is not one of"):
    template_scores(q, of_image, 2, "median")
  # detector-score weights scale each image's embedding before the media means
  w = np.array([1.0, 3.0, 2.0, 1.0, 0.5])
  t = template_embeddings(x, of_image, media, 2, weights=w)
  np.testing.assert_allclose(t, [[(1 + 9) / 4, 4], [(2 + 2.5) / 2, (2 + 2.5) / 2]])


def test_benchmark_inputs_templates_and_fr_matrix(tmp_path):
  variables = random_variables(seed=5)
  imgs = faces(5, 7)
  ref = apply(*variables, preprocess(imgs))
  exits, emb = np.asarray(ref.exits, np.float64), np.asarray(ref.embedding, np.float64)
  source = ArraySource(imgs, np.array([f"{i}.jpg" for i in range(5)]))
  templates = Templates(np.array([11, 30]), np.array([1, 1, 0, 0, 1]), np.array([1, 1, 2, 3, 4]))
  pairs = Pairs(np.array([0, 1]), np.array([1, 0]), np.array([False, True]))
  ds = Dataset("ijbc_1to1/tiny", source, pairs, templates)
  got = benchmark_inputs(
    ds, variables, str(tmp_path / "run"), batch_size=2, progress=False, template_quality="mean"
  )
  np.testing.assert_array_equal(got.ids, [11, 30])
  np.testing.assert_allclose(
    got.exit_scores, [exits[2:4].mean(0), exits[[0, 1, 4]].mean(0)], atol=1e-5
  )
  low = benchmark_inputs(ds, variables, str(tmp_path / "run"), batch_size=2, progress=False)
  np.testing.assert_allclose(
    low.exit_scores, [exits[2:4].min(0), exits[[0, 1, 4]].min(0)], atol=1e-5
  )
  np.testing.assert_array_equal(low.comparison, got.comparison)
  with pytest.raises(ValueError, match="holds no detector scores"):
    from exfiqa_jax.evaluation.inputs import pair_inputs
    from exfiqa_jax.scoring.score import Scores

    pair_inputs(ds, Scores(source.ids, exits, emb), emb, detector_weights=True)
  t30 = (emb[0:2].mean(0) + emb[4]) / 2  # media 1 holds images 0 and 1
  t11 = emb[2:4].mean(0)
  np.testing.assert_allclose(
    got.comparison, _cos_loop(np.stack([t11, t30]), [0, 1], [1, 0]), atol=1e-5
  )
  fr = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
  np.save(tmp_path / "fr.npy", fr)
  flat = Dataset(
    "x", source, Pairs(np.array([0, 2, 4]), np.array([1, 3, 0]), np.array([True, False, False]))
  )
  got = benchmark_inputs(
    flat,
    variables,
    str(tmp_path / "run2"),
    batch_size=2,
    fr_embeddings=str(tmp_path / "fr.npy"),
    progress=False,
  )
  np.testing.assert_allclose(got.exit_scores, exits, atol=1e-5)
  np.testing.assert_allclose(
    got.comparison, _cos_loop(fr.astype(np.float64), [0, 2, 4], [1, 3, 0]), atol=1e-6
  )
  with pytest.raises(ValueError, match="has no pairs"):
    benchmark_inputs(Dataset("y", source), variables, str(tmp_path / "run3"))
