"""An evaluation job whose fr_models name converted FR checkpoints: one scoring pass, the
flip rules, IJB-C templates over FR embeddings, and the job's config errors."""

import os

import numpy as np
import pytest

import exfiqa_jax
from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax import data
from exfiqa_jax.configs import load_config_file
from exfiqa_jax.convert import convert_file
from exfiqa_jax.data import ArraySource, Dataset, Pairs, Templates
from exfiqa_jax.data.synthetic import make_verification_bin
from exfiqa_jax.evaluation.comparison import cosine, template_embeddings
from exfiqa_jax.evaluation.inputs import fr_embeddings, pair_inputs
from exfiqa_jax.evaluation.job_config import check_job, fr_checkpoints
from exfiqa_jax.evaluation.run import evaluate_job, inputs_path
from exfiqa_jax.metrics.inputs import PairInputs
from exfiqa_jax.models.checkpoint import load
from exfiqa_jax.report.summary import write_job_report
from exfiqa_jax.scoring.score import FRModel, score
from tests.fr_helpers import reference_state_dict, tiny
from tests.score_helpers import TINY, faces, random_variables


@pytest.fixture(scope="module")
def job(tmp_path_factory):
  d = tmp_path_factory.mktemp("fr_job")
  make_verification_bin(str(d / "files" / "demo.bin"), num_pairs=30, num_ids=6)
  _, params, stats = random_variables(seed=2)
  exfiqa_jax.save(str(d / "vit"), TINY, params, stats)
  for name, family in (("arc", "arcface"), ("mag", "magface")):
    torch.save(reference_state_dict(tiny(family), seed=4)[1], d / f"{name}.pt")
    convert_file(str(d / f"{name}.pt"), str(d / name), family=family)
  cfg = dict(
    checkpoint=str(d / "vit"),
    out_dir=str(d / "out"),
    data_dir=str(d / "tfds"),
    datasets=dict(demo=dict(builder="verification_bin", files=str(d / "files"))),
    fr_models={
      "self": "self",
      "ArcFace": {"checkpoint": str(d / "arc"), "flip": "concat"},
      "MagFace": {"checkpoint": str(d / "mag"), "flip": "sum", "channel_order": "rgb"},
    },
    embeddings={},
    scoring=dict(batch_size=8),
    metrics=dict(fmrs=(1e-1,), edc_fmr=1e-1, edc_limits=(0.2,)),
    sweep=dict(rules=("mean", "weighted"), norms=("none",), top_k=1, memory_mb=64),
    weights=dict(powers=(0.0, 1.0), simplex=8, learn_steps=5, seed=0),
  )
  check_job(cfg, "job.py")
  write_job_report(evaluate_job(cfg, progress=False), cfg)
  return d, cfg


def test_fr_checkpoints_run_in_the_scoring_pass_with_their_flip_rules(job):
  d, cfg = job
  ds = data.load("verification_bin/demo", cfg["data_dir"])
  arc, mag = load(str(d / "arc")), load(str(d / "mag"))
  fr = [
    FRModel("ArcFace", arc.config, arc[1:], flip=True),
    FRModel("MagFace", mag.config, mag[1:], flip=True, channel_order="rgb"),
  ]
  s = score(random_variables(seed=2), ds.images, fr_models=fr, batch_size=8, progress=False)
  e, f = (s.fr["ArcFace"][k].astype(np.float64) for k in ("embeddings", "embeddings_flip"))
  unit = np.concatenate([x / np.linalg.norm(x, axis=1, keepdims=True) for x in (e, f)], 1)
  m = s.fr["MagFace"]
  p = ds.pairs
  for name, emb in (("ArcFace", unit), ("MagFace", m["embeddings"] + m["embeddings_flip"])):
    z = PairInputs.load(inputs_path(cfg["out_dir"], "demo", name))
    np.testing.assert_allclose(z.comparison, cosine(emb, p.a, p.b), atol=1e-6)
    np.testing.assert_array_equal(z.exit_scores, s.exit_scores)  # the same exits
  own = PairInputs.load(inputs_path(cfg["out_dir"], "demo", "self"))
  np.testing.assert_allclose(own.comparison, cosine(s.embeddings, p.a, p.b), atol=1e-6)
  # channel_order "rgb" overrides MagFace's BGR: the embeddings differ from its default's.
  default = score(
    None, ds.images, fr_models=[FRModel("m", mag.config, mag[1:])], batch_size=8, progress=False
  )
  assert not np.allclose(default.fr["m"]["embeddings"], m["embeddings"], atol=1e-3)
  assert (d / "out" / "summary.md").read_text().count("ArcFace") >= 1


def test_ijbc_templates_aggregate_fr_embeddings(job):
  d, _ = job
  arc = load(str(d / "arc"))
  imgs = faces(5, 7)
  source = ArraySource(imgs, np.array([f"{i}.jpg" for i in range(5)]))
  of_image, media = np.array([1, 1, 0, 0, 1]), np.array([1, 1, 2, 3, 4])
  templates = Templates(np.array([11, 30]), of_image, media)
  ds = Dataset("ijbc", source, Pairs(np.array([0]), np.array([1]), np.array([True])), templates)
  fr = [FRModel("a", arc.config, arc[1:], flip=True)]
  s = score(random_variables(seed=2), source, fr_models=fr, batch_size=1, progress=False)
  emb = fr_embeddings(s, "a", "concat")
  got = pair_inputs(ds, s, emb)
  t = template_embeddings(emb, of_image, media, 2)
  np.testing.assert_allclose(got.embeddings, t, atol=1e-6)
  np.testing.assert_allclose(got.comparison, cosine(t, np.array([0]), np.array([1])), atol=1e-6)
  with pytest.raises(ValueError, match="ran without flip; flip rule 'sum' needs it"):
    fr_embeddings(
      score(
        None, source, fr_models=[FRModel("a", arc.config, arc[1:])], batch_size=1, progress=False
      ),
      "a",
      "sum",
    )


@pytest.mark.parametrize(
  "spec,error,msg",
  [
    ({"checkpoint": "nowhere"}, FileNotFoundError, "fr_models.X.checkpoint nowhere does not exist"),
    ({"checkpoint": "{arc}", "flip": "max"}, ValueError, "fr_models.X.flip 'max' is not one of"),
    ({"checkpoint": "{arc}", "channel_order": "hsv"}, ValueError, "channel_order 'hsv' is not"),
    ({"checkpoint": "{arc}", "dtype": "x"}, KeyError, r"fr_models.X has unknown keys \['dtype'\]"),
    (7, ValueError, "fr_models.X is 7; expected 'self'"),
  ],
)
def test_config_errors_name_the_entry(job, spec, error, msg):
  d, cfg = job
  if isinstance(spec, dict):
    spec = {k: v.format(arc=d / "arc") for k, v in spec.items()}
  with pytest.raises(error, match=msg):
    check_job({**cfg, "fr_models": {"X": spec}}, "job.py")


def test_a_vit_checkpoint_named_as_fr_model_is_refused(job):
  d, cfg = job
  bad = {**cfg, "fr_models": {"X": {"checkpoint": str(d / "vit")}}, "out_dir": str(d / "o2")}
  check_job(bad, "job.py")
  with pytest.raises(ValueError, match="holds a ViT-FIQA model, not a face-recognition backbone"):
    evaluate_job(bad, progress=False)


def test_paper_job_needs_raw_files_and_five_checkpoints(tmp_path, monkeypatch):
  cfg = load_config_file("paper")
  monkeypatch.chdir(tmp_path)
  specs = fr_checkpoints(cfg)
  assert sorted(specs) == ["ArcFace", "CurricularFace", "ElasticFace", "MagFace"]
  assessors = [s["checkpoint"] for s in cfg["quality_methods"].values() if "checkpoint" in s]
  assert sorted(assessors) == ["weights/arcface", "weights/crfiqa_l", "weights/crfiqa_s"]
  for d in [cfg["checkpoint"], *(s["checkpoint"] for s in specs.values()), "data/IJBC"]:
    os.makedirs(d)
  os.makedirs("weights/crfiqa_l")
  os.makedirs("weights/crfiqa_s")
  for name, ds in cfg["datasets"].items():
    if ds["builder"] == "verification_bin":
      os.makedirs(ds["files"], exist_ok=True)
      open(os.path.join(ds["files"], f"{name}.bin"), "w").close()
    elif ds["builder"] == "cr_fiqa_folder":
      os.makedirs(ds["files"])
      open(os.path.join(ds["files"], "pair_list.txt"), "w").close()
  check_job(cfg, "paper")  # every file the job needs is there: no precomputed embeddings
  os.rmdir(specs["MagFace"]["checkpoint"])
  with pytest.raises(FileNotFoundError, match="fr_models.MagFace.checkpoint weights/magface"):
    check_job(cfg, "paper")
