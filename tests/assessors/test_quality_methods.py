"""The quality-method table and the job's `quality_methods` section: every refusal in one
line naming the key, before any scoring; the networks' kind and family checked when the
job loads them, before the scoring pass writes anything."""

import os

import numpy as np
import pytest

import exfiqa_jax
from exfiqa_jax.cli import main
from exfiqa_jax.data.synthetic import make_verification_bin
from exfiqa_jax.evaluation.job_config import check_job
from exfiqa_jax.evaluation.run import evaluate_job, quality_models
from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.scoring.assessors import (
  GRAFIQS_VARIANTS,
  METHODS,
  SOURCES,
  magface_quality,
  method_of,
  resolve,
)
from tests.score_helpers import TINY, random_variables

SMALL = dict(layers=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=8, embedding_size=8)


def test_every_method_is_a_complete_record():
  assert list(METHODS) == ["CR-FIQA", "MagFace", "SER-FIQ", "GraFIQs"]
  for m in METHODS.values():
    assert m.sources and set(m.sources) <= set(SOURCES), m.name
    assert callable(m.compute), m.name
    assert (m.from_embeddings is not None) == (m.name == "MagFace")
    assert all(s.check(s.default) for s in m.settings.values()), m.name
    assert m.direction and m.cost and m.where
  assert resolve(METHODS["SER-FIQ"], {"passes": 7}) == {"passes": 7, "p": 0.5, "seed": 0}
  assert METHODS["GraFIQs"].settings["variant"].default in GRAFIQS_VARIANTS
  assert method_of("CR-FIQA(L)", {}) == "CR-FIQA" and method_of("x", {"method": "MagFace"})
  e = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32) * 30
  np.testing.assert_allclose(magface_quality(e), np.sqrt((e.astype(np.float64) ** 2).sum(1)))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
  """A valid job config (tiny random checkpoints): ArcFace-family and MagFace-family FR
  checkpoints, a ViT-FIQA one, a generated benchmark."""
  d = tmp_path_factory.mktemp("qm")
  exfiqa_jax.save(str(d / "vit"), TINY, *random_variables(seed=1)[1:])
  for name in ("arcface", "magface"):
    config = FRConfig.for_family(name, **SMALL)
    exfiqa_jax.save(str(d / name), config, *random_variables(config, seed=2)[1:])
  make_verification_bin(str(d / "files" / "demo.bin"), num_pairs=10, num_ids=4)
  return d, dict(
    checkpoint=str(d / "vit"),
    out_dir=str(d / "out"),
    data_dir=str(d / "tfds"),
    datasets=dict(demo=dict(builder="verification_bin", files=str(d / "files"))),
    fr_models={"self": "self", "MagFace": {"checkpoint": str(d / "magface")}},
    quality_methods={"MagFace": {"fr_model": "MagFace"}},
  )


BAD = [
  ({"FaceQnet": {"checkpoint": "{d}/arcface"}}, KeyError, r"unknown quality method 'FaceQnet'"),
  (
    {"CR-FIQA": {"checkpoint": "{d}/arcface", "passes": 3}},
    KeyError,
    r"quality_methods\.CR-FIQA has unknown keys \['passes'\]; known: \['method'",
  ),
  (
    {"CR-FIQA(L)": {"fr_model": "MagFace"}},
    ValueError,
    r"quality_methods\.CR-FIQA\(L\) needs exactly one of 'checkpoint' \(CR-FIQA\)",
  ),
  (
    {"SER-FIQ": {"fr_model": "MagFace", "checkpoint": "{d}/arcface"}},
    ValueError,
    r"needs exactly one of 'fr_model' or 'checkpoint' \(SER-FIQ\)",
  ),
  ({"MagFace": {"fr_model": "Nope"}}, KeyError, r"fr_model 'Nope' is not in fr_models"),
  ({"MagFace": {"fr_model": "self"}}, ValueError, r"fr_model 'self' must run from a checkpoint"),
  (
    {"SER-FIQ": {"fr_model": "MagFace", "passes": 0}},
    TypeError,
    r"quality_methods\.SER-FIQ\.passes must be an integer >= 2, the number of stochastic",
  ),
  ({"SER-FIQ": {"fr_model": "MagFace", "passes": 1}}, TypeError, r"SER-FIQ\.passes must be an"),
  ({"SER-FIQ": {"fr_model": "MagFace", "p": 1.5}}, TypeError, r"SER-FIQ\.p must be a dropout"),
  ({"SER-FIQ": {"fr_model": "MagFace", "seed": "a"}}, TypeError, r"SER-FIQ\.seed must be an int"),
  (
    {"GraFIQs": {"checkpoint": "{d}/arcface", "variant": "block9"}},
    TypeError,
    r"GraFIQs\.variant must be one of \('image', 'block1'",
  ),
  (
    {"GraFIQs": {"checkpoint": "{d}/arcface", "channel_order": "hsv"}},
    ValueError,
    r"GraFIQs\.channel_order 'hsv' is not 'rgb' or 'bgr'",
  ),
  ({"MagFace": 7}, TypeError, r"quality_methods\.MagFace must be a dict"),
  ({"Mag/Face": {"method": "MagFace"}}, ValueError, r"name must be non-empty, without '/'"),
  (
    {"exit 1": {"method": "MagFace", "fr_model": "MagFace"}},
    ValueError,
    r"quality_methods names \['exit 1'\] are the names of exits",
  ),
  (
    {"CR-FIQA": {"checkpoint": "{d}/nowhere"}},
    FileNotFoundError,
    r"quality_methods\.CR-FIQA\.checkpoint .*nowhere does not exist",
  ),
  ("MagFace", TypeError, r"quality_methods must be a dict \{name: spec\}"),
]


def _filled(spec, d):
  """The spec with `{d}` in its strings replaced by the job folder."""
  if not isinstance(spec, dict):
    return spec
  return {k: v.format(d=d) if isinstance(v, str) else v for k, v in spec.items()}


@pytest.mark.parametrize("section,error,message", BAD)
def test_bad_sections_refused_in_one_line(base, section, error, message):
  d, cfg = base
  if isinstance(section, dict):
    section = {n: _filled(s, d) for n, s in section.items()}
  with pytest.raises(error, match=r"job\.py: .*" + message) as e:
    check_job({**cfg, "quality_methods": section}, "job.py")
  assert "\n" not in str(e.value)


def test_a_typo_of_the_section_is_refused(base):
  _, cfg = base
  bad = {k: v for k, v in cfg.items() if k != "quality_methods"}
  with pytest.raises(KeyError, match=r"unknown key 'quality_method' .*'quality_methods'\?"):
    check_job({**bad, "quality_method": {}}, "job.py")


@pytest.mark.parametrize(
  "section,message",
  [
    (
      {"CR-FIQA": {"checkpoint": "{d}/arcface"}},
      r"^quality_methods\.CR-FIQA \(CR-FIQA\) needs a CR-FIQA model; .*arcface holds a "
      r"face-recognition backbone of family 'arcface'$",
    ),
    (
      {"SER-FIQ": {"checkpoint": "{d}/vit"}},
      r"^quality_methods\.SER-FIQ \(SER-FIQ\) needs a face-recognition backbone; .*vit holds "
      r"a ViT-FIQA model of family 'vit_fiqa'$",
    ),
    (
      {"MagFace (norm)": {"method": "MagFace", "fr_model": "ArcFace"}},
      r"^quality_methods\.MagFace \(norm\) \(MagFace\) needs a face-recognition backbone of "
      r"family 'magface'; .*arcface holds a face-recognition backbone of family 'arcface'$",
    ),
  ],
)
def test_networks_of_a_wrong_kind_or_family_refused_before_scoring(base, section, message):
  d, cfg = base
  section = {n: _filled(s, d) for n, s in section.items()}
  fr = {**cfg["fr_models"], "ArcFace": {"checkpoint": str(d / "arcface")}}
  job = {**cfg, "fr_models": fr, "quality_methods": section}
  check_job(job, "job.py")  # files exist: the kinds are read when the job loads them
  with pytest.raises(ValueError, match=message):
    quality_models(job)
  with pytest.raises(ValueError, match=message):
    evaluate_job(job, progress=False)
  assert not os.path.exists(cfg["out_dir"])  # nothing scored, nothing written


def test_cli_prints_one_line_and_exits_2(base, tmp_path, capsys):
  d, cfg = base
  bad = {**cfg, "quality_methods": {"SER-FIQ": {"fr_model": "MagFace", "passes": -1}}}
  (tmp_path / "job.py").write_text(f"def get_config():\n  return {bad!r}\n")
  assert main(["evaluate", "--config", str(tmp_path / "job.py")]) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and "quality_methods.SER-FIQ.passes must be" in err
  assert not os.path.exists(cfg["out_dir"])
