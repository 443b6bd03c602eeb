"""End to end against the upstream scripts: an `exfiqa evaluate` job on the files CR-FIQA's
extractors write, with ViT-FIQA and FR models converted from PyTorch files, gives what
the upstream scripts give on them.

The reference here repeats the upstream steps on the same files, with the PyTorch
models: ViT-FIQA `evaluation/getQualityScore.py` + `QualityModel.py` (cv2.imread, the
default `--color_channel BGR`, i.e. no conversion, `/255 - 0.5) / 0.5`, the final quality),
CR-FIQA `feature_extraction/extract_emb.py` + `model/FaceModel.py` (cv2.imread
unconverted, cv2.flip for the mirror, each half L2-normalised, side by side; /255 for
MagFace), `IJB-C Evaluation/ijb_qs_pair_file.py` (media mean, sum, L2 normalisation;
template quality the min of its images', a pair's the min of its templates') and CR-FIQA's
ERC rules (`exfiqa_jax.metrics.reference.erc_reference`, on the pair min quality).
"""

import os

import numpy as np
import pytest

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax import data
from exfiqa_jax.convert import convert_file
from exfiqa_jax.convert.fr_torch_reference import embedding
from exfiqa_jax.convert.torch_reference import ViTFIQAReference, randomize_
from exfiqa_jax.evaluation.inputs import fr_embeddings, pair_inputs
from exfiqa_jax.evaluation.job_config import check_job
from exfiqa_jax.evaluation.run import evaluate_job, inputs_path, read_inputs
from exfiqa_jax.metrics.reference import erc_reference
from exfiqa_jax.scoring.run_folder import read_npz
from exfiqa_jax.scoring.score import Scores
from tests.data.upstream_writers import (
  cv2,
  extract_bin,
  smooth_faces,
  upstream_align,
  write_bin,
  write_ijbc_release,
)
from tests.fr_helpers import reference_state_dict, tiny
from tests.score_helpers import TINY

FMRS = (0.1, 0.05)
FR = {"ElasticFace": "elasticface", "MagFace": "magface"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """The PyTorch models (ViT-FIQA, two FR families) and their converted checkpoints."""
  d = tmp_path_factory.mktemp("upstream_models")
  vit = randomize_(ViTFIQAReference(**TINY.to_dict()), seed=11)
  torch.save(vit.state_dict(), d / "vit.pt")
  convert_file(str(d / "vit.pt"), str(d / "vit"), num_heads=TINY.num_heads)
  fr = {}
  for i, (name, family) in enumerate(FR.items()):
    ref, sd = reference_state_dict(tiny(family), seed=20 + i)
    torch.save(sd, d / f"{name}.pt")
    convert_file(str(d / f"{name}.pt"), str(d / name), family=family)
    fr[name] = ref
  return d, vit, fr


def _job(d, out, datasets, **metrics):
  cfg = dict(
    checkpoint=str(d / "vit"),
    out_dir=str(out / "out"),
    data_dir=str(out / "tfds"),
    datasets=datasets,
    # CR-FIQA's extraction: true RGB for every family (MagFace's release order is BGR)
    fr_models={
      name: {"checkpoint": str(d / name), "flip": "concat", "channel_order": "rgb"} for name in FR
    },
    embeddings={},
    scoring=dict(batch_size=16),
    metrics=dict(fmrs=FMRS, edc_fmr=0.1, edc_limits=(0.2,), **metrics),
    sweep=dict(rules=("mean",), norms=("none",), top_k=1, memory_mb=64),
    weights=dict(powers=(0.0,), simplex=4, learn_steps=2, seed=0),
  )
  check_job(cfg, "job.py")
  _, results = evaluate_job(cfg, progress=False)
  return cfg, {(name, fr): an for name, fr, an in results}


def _upstream_quality(vit, images_bgr_slot: np.ndarray) -> np.ndarray:
  """QualityModel: uint8 [N, 112, 112, 3] as cv2.imread gives it, unconverted -> exits [N, L]
  (the last column is getQualityScore.py's score)."""
  x = torch.from_numpy(images_bgr_slot.transpose(0, 3, 1, 2).astype(np.float32))
  with torch.no_grad():
    _, exits = vit(x.div(255).sub(0.5).div(0.5))
  return exits.numpy().astype(np.float64)


def _upstream_features(ref, family: str, images_bgr_slot: np.ndarray) -> np.ndarray:
  """extract_emb.py: [N, 2D], the L2-normalised features of the image and of its mirror."""
  halves = []
  for flip in (0, 1):
    batch = np.stack([cv2.flip(im, 1) if flip else im for im in images_bgr_slot])
    x = torch.from_numpy(batch.transpose(0, 3, 1, 2).astype(np.float32))
    x = x.div(255) if family == "magface" else x.div(255).sub(0.5).div(0.5)
    with torch.no_grad():
      f = embedding(ref, x).numpy().astype(np.float64)
    halves.append(f / np.linalg.norm(f, axis=1, keepdims=True))
  return np.concatenate(halves, axis=1)


def _cos(x, a, b):
  x = x / np.linalg.norm(x, axis=1, keepdims=True)
  return np.clip(np.einsum("pd,pd->p", x[a], x[b]), -1.0, 1.0)


def _last_exit_erc(an, depth: int) -> np.ndarray:
  row = next(r for r in an.rows if r["variant"] == f"exit {depth}")
  return np.array([row[f"erc_area@{f:g}"] for f in FMRS])


def _agree(what: str, got, want, atol: float) -> None:
  """Asserts agreement within atol; prints the max abs difference (seen with -s)."""
  diff = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
  print(f"agreement {what}: max abs diff {diff:.3g}")
  assert diff <= atol, f"{what}: max abs diff {diff:.3g} > {atol:g}"


def test_extracted_bin_folder_job_gives_the_upstream_numbers(models, tmp_path):
  d, vit, fr = models
  pairs = 36
  rgb = smooth_faces(2 * pairs, seed=7)
  # labels whose best two pairs (the last ERC point) hold a genuine and an impostor one
  issame = (np.random.default_rng(10).random(pairs) < 0.5).tolist()
  write_bin(str(tmp_path / "data" / "lfw.bin"), rgb, issame)
  extract_bin(str(tmp_path / "data" / "lfw.bin"), str(tmp_path / "data" / "quality_data"))
  folder = tmp_path / "data" / "quality_data" / "lfw"
  datasets = dict(lfw=dict(builder="cr_fiqa_folder", files=str(folder), channel_order="bgr"))
  cfg, results = _job(d, tmp_path, datasets)
  # The upstream side: the folder's image list read relative to data/, cv2.imread.
  listed = (folder / "image_path_list.txt").read_text().split()
  fed = np.stack([cv2.imread(str(tmp_path / "data" / p)) for p in listed])
  table = np.loadtxt(folder / "pair_list.txt", dtype=np.int64)
  a, b, labels = table[:, 0], table[:, 1], table[:, 2] == 1
  exits = _upstream_quality(vit, fed)
  pq = np.minimum(exits[a, -1], exits[b, -1])  # erc.py: the pair's min quality
  for name, family in FR.items():
    z = read_inputs(inputs_path(cfg["out_dir"], "lfw", name))
    np.testing.assert_array_equal(z["a"], a)
    np.testing.assert_array_equal(z["labels"], labels)
    _agree("bin: last-exit quality", z["exit_scores"][:, -1], exits[:, -1], 2e-5)
    _agree("bin: every exit's quality", z["exit_scores"], exits, 2e-5)
    feats = _upstream_features(fr[name], family, fed)
    _agree(f"bin: comparison ({name})", z["comparison"], _cos(feats, a, b), 1e-5)
    want = [erc_reference(pq, _cos(feats, a, b), labels, f)[1] for f in FMRS]
    assert np.isfinite(want).all()
    _agree(f"bin: ERC areas ({name})", _last_exit_erc(results["lfw", name], 3), want, 1e-6)
    # Fed BGR (the earlier documented setting) the comparison scores are far off.
    wrong = _upstream_features(fr[name], family, fed[..., ::-1].copy())
    assert np.abs(z["comparison"] - _cos(wrong, a, b)).max() > 1e-3


# media of each template's images: single- and multi-frame media, several media a template
TEMPLATES = [[1], [2, 2, 3], [4], [5, 5], [6, 7], [8], [9, 9, 9], [10, 11]] * 2


def test_ijbc_release_job_gives_ijb_qs_pair_file_numbers(models, tmp_path):
  d, vit, fr = models
  ids = np.arange(len(TEMPLATES)) % 2  # identity of template t + 1
  pairs = [
    (i + 1, j + 1, int(ids[i] == ids[j]))
    for i in range(len(TEMPLATES))
    for j in range(i + 1, len(TEMPLATES))
  ]
  info = write_ijbc_release(str(tmp_path / "IJBC"), TEMPLATES, pairs, seed=9)
  datasets = dict(ijbc=dict(builder="ijbc_1to1", files=str(tmp_path / "IJBC")))
  cfg, results = _job(d, tmp_path, datasets)
  # The upstream side: extract_IJB.py's aligned arrays (true RGB; its JPEG write is the one
  # step left out: the crops are stored losslessly here), fed as cv2.imread would give them.
  meta = np.loadtxt(tmp_path / "IJBC" / "meta" / "ijbc_face_tid_mid.txt", dtype=str)
  names, templates, medias = meta[:, 0], meta[:, 1].astype(int), meta[:, 2].astype(int)
  fed = np.stack(
    [upstream_align(str(tmp_path / "IJBC" / "loose_crop" / n), info[n][0]) for n in names]
  )
  score_dict = dict(zip(names, _upstream_quality(vit, fed), strict=True))  # per exit

  def get_min_score(person, exit_):  # ijb_qs_pair_file.py get_score_part
    return min(score_dict[n][exit_] for n in names[templates == person])

  t1, t2 = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
  labels = np.array([p[2] == 1 for p in pairs])
  unique_templates = np.unique(templates)
  for name, family in FR.items():
    z = read_inputs(inputs_path(cfg["out_dir"], "ijbc", name))
    np.testing.assert_array_equal(z["ids"], unique_templates)
    for e in range(3):
      tq = [get_min_score(t, e) for t in unique_templates]
      _agree("ijbc: template quality, every exit", z["exit_scores"][:, e], tq, 2e-5)
    feats = _upstream_features(fr[name], family, fed)
    agg = {}
    for t in unique_templates:  # aggregate_templates
      f, m = feats[templates == t], medias[templates == t]
      media = [f[m == u].mean(axis=0) for u in np.unique(m)]
      s = np.sum(media, axis=0)
      agg[t] = s / np.linalg.norm(s)
    x = np.stack([agg[t] for t in unique_templates])
    pa, pb = np.searchsorted(unique_templates, t1), np.searchsorted(unique_templates, t2)
    np.testing.assert_array_equal(z["a"], pa)
    comparison = _cos(x, pa, pb)
    _agree(f"ijbc: comparison ({name})", z["comparison"], comparison, 1e-5)
    pq = [min(get_min_score(u, 2), get_min_score(v, 2)) for u, v in zip(t1, t2, strict=True)]
    want = [erc_reference(pq, comparison, labels, f)[1] for f in FMRS]
    assert np.isfinite(want).all()
    _agree(f"ijbc: ERC areas ({name})", _last_exit_erc(results["ijbc", name], 3), want, 1e-6)
  # Detector-score weights (off by default, as CR-FIQA): each image's features scaled by
  # its score before the same aggregation.
  ds = data.load("ijbc_1to1/ijbc", cfg["data_dir"])
  scores = Scores.from_arrays(
    names, read_npz(os.path.join(cfg["out_dir"], "scores", "ijbc", "scores.npz"))
  )
  x = pair_inputs(ds, scores, fr_embeddings(scores, "MagFace", "concat"), detector_weights=True)
  feats = (
    _upstream_features(fr["MagFace"], "magface", fed)
    * np.array([info[n][1] for n in names])[:, None]
  )
  agg = []
  for t in unique_templates:
    f, m = feats[templates == t], medias[templates == t]
    s = np.sum([f[m == u].mean(axis=0) for u in np.unique(m)], axis=0)
    agg.append(s / np.linalg.norm(s))
  weighted = _cos(np.stack(agg), pa, pb)
  _agree("ijbc: comparison with detector weights (MagFace)", x.comparison, weighted, 1e-5)
  assert np.abs(weighted - comparison).max() > 1e-4  # the weights do change the scores
