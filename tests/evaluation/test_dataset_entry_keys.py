"""A job's dataset entries and template rule: the keys of issue 22 checked before any work."""

import os

import pytest

from exfiqa_jax.evaluation.job_config import check_job


def _cfg(tmp_path, **entry):
  os.makedirs(tmp_path / "ckpt", exist_ok=True)
  os.makedirs(tmp_path / "bins", exist_ok=True)
  os.makedirs(tmp_path / "xq", exist_ok=True)
  (tmp_path / "bins" / "lfw.bin").write_bytes(b"")
  (tmp_path / "xq" / "pair_list.txt").write_text("")
  return dict(
    checkpoint=str(tmp_path / "ckpt"),
    out_dir=str(tmp_path / "out"),
    data_dir=str(tmp_path / "tfds"),
    datasets=dict(x=entry),
    fr_models=["self"],
  )


@pytest.mark.parametrize(
  "entry,metrics,error,message",
  [
    (dict(builder="verification_bin", image_root="."), {}, ValueError, "x.image_root applies only"),
    (
      dict(builder="cr_fiqa_folder", image_root="nowhere"),
      {},
      FileNotFoundError,
      "'nowhere' is not",
    ),
    (dict(builder="verification_bin", detector_weights=True), {}, ValueError, "only to ijbc_1to1"),
    (dict(builder="ijbc_1to1", detector_weights=1), {}, TypeError, "must be True or False"),
    (dict(builder="verification_bin", root="x"), {}, KeyError, "unknown keys ['root']"),
    (
      dict(builder="verification_bin"),
      dict(template_quality="median"),
      TypeError,
      "'min' (upstream",
    ),
  ],
)
def test_dataset_entry_keys_are_checked(tmp_path, entry, metrics, error, message):
  files = {"verification_bin": "bins", "cr_fiqa_folder": "xq", "ijbc_1to1": "bins"}
  cfg = _cfg(tmp_path, files=str(tmp_path / files[entry["builder"]]), **entry)
  cfg["metrics"] = metrics
  with pytest.raises(error) as e:
    check_job(cfg, "job.py")
  text = e.value.args[0]
  assert message in text and text.startswith("job.py: ")


def test_accepted_entries(tmp_path):
  cfg = _cfg(
    tmp_path, builder="cr_fiqa_folder", files=str(tmp_path / "xq"), image_root=str(tmp_path)
  )
  cfg["metrics"] = dict(template_quality="mean")
  check_job(cfg, "job.py")
  cfg["datasets"]["x"] = dict(builder="ijbc_1to1", files=str(tmp_path), detector_weights=True)
  check_job(cfg, "job.py")


def test_paper_config_states_the_reproduction_rule():
  from exfiqa_jax.configs import load_config_file
  from exfiqa_jax.evaluation.job_config import fr_checkpoints

  cfg = load_config_file("paper")
  fr = fr_checkpoints(cfg)
  assert sorted(fr) == ["ArcFace", "CurricularFace", "ElasticFace", "MagFace"]
  # CR-FIQA's extract_emb.py fed cv2.imread's array of swapped JPEGs: true RGB, all four
  assert {k: (s["channel_order"], s["flip"]) for k, s in fr.items()} == {
    k: ("rgb", "concat") for k in fr
  }
  orders = {k: d.get("channel_order") for k, d in cfg["datasets"].items()}
  assert orders == {
    **{k: None for k in ("lfw", "agedb_30", "cfp_fp", "calfw", "cplfw", "ijbc")},
    "xqlfw": "bgr",  # the extractors' swapped JPEGs
    "adience": "bgr",
  }
  assert cfg["metrics"]["template_quality"] == "min"


def test_what_vit_fiqa_is_fed_is_overridable_and_fr_inputs_stay():
  import numpy as np

  from exfiqa_jax import apply, preprocess
  from exfiqa_jax.data import ArraySource
  from exfiqa_jax.evaluation.run import fed_orders
  from exfiqa_jax.models.fr_config import FRConfig
  from exfiqa_jax.models.fr_inference import create_fr
  from exfiqa_jax.scoring.score import FRModel, score
  from tests.score_helpers import faces, random_variables

  imgs = faces(3, 4)  # stored swapped, as CR-FIQA's extracted files
  source = ArraySource(imgs, np.array(["a", "b", "c"]), "bgr")
  cfg = FRConfig.for_family("magface", layers=(1, 1, 1, 1), widths=(8, 8, 8, 8), stem_width=8)
  fr = [FRModel("m", cfg, create_fr(cfg, seed=1), channel_order="rgb")]
  variables = random_variables(seed=3)
  runs = {}
  for order in ("rgb", "bgr"):
    images, fed = fed_orders(source, fr, order)
    runs[order] = score(variables, images, fr_models=fed, batch_size=3, progress=False)
  true_rgb = imgs[..., ::-1]
  for order, x in (("rgb", true_rgb), ("bgr", imgs)):
    want = np.asarray(apply(*variables, preprocess(x)).exits)
    np.testing.assert_allclose(runs[order].exit_scores, want, atol=1e-5)
  assert np.abs(runs["rgb"].exit_scores - runs["bgr"].exit_scores).max() > 1e-3
  np.testing.assert_array_equal(
    runs["rgb"].fr["m"]["embeddings"], runs["bgr"].fr["m"]["embeddings"]
  )
