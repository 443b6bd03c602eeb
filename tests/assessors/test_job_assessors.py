"""One evaluation job with every quality assessor: the same qualities as each assessor
alone (and as its PyTorch reference), on 1 and 8 forced CPU devices; its rows and curves
beside the exits; the cross-benchmark rows with the best of each column in bold."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import import_torch

torch = import_torch()

import jax
from flax import nnx

from exfiqa_jax import data
from exfiqa_jax.evaluation.analysis import analyse
from exfiqa_jax.evaluation.inputs import assessor_qualities
from exfiqa_jax.evaluation.job_config import check_job
from exfiqa_jax.evaluation.run import evaluate_job, inputs_path, quality_models
from exfiqa_jax.metrics.inputs import PairInputs
from exfiqa_jax.models.checkpoint import load
from exfiqa_jax.models.grafiqs import grafiqs_quality
from exfiqa_jax.models.registry import fr_input
from exfiqa_jax.models.serfiq import serfiq_quality
from exfiqa_jax.report import cross
from exfiqa_jax.scoring.score import FRModel, Scores, score
from tests.assessors.job_helpers import job_config, write_checkpoints
from tests.fr_helpers import reference_embedding

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def job(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("assessor_job"))
  refs = write_checkpoints(d)
  cfg = job_config(d)
  check_job(cfg, "job.py")
  results = evaluate_job(cfg, progress=False)
  cross.write(cfg["out_dir"], cross.cross_tables(results.results))  # write_job_report's tables
  ds = data.load("verification_bin/demo", cfg["data_dir"])
  scores = Scores.read(os.path.join(cfg["out_dir"], "scores", "demo", "scores.npz"))
  return d, cfg, refs, results, ds, scores


def _job_qualities(cfg, ds, scores):
  _, from_embeddings = quality_models(cfg)
  return assessor_qualities(ds, scores, from_embeddings, "min", list(cfg["quality_methods"]))


def _alone(cfg, ds) -> dict[str, np.ndarray]:
  """Each assessor in a scoring pass of its own (MagFace: its FR model alone, normed)."""
  out = {}
  for m in quality_models(cfg)[0]:
    out[m.name] = score(None, ds.images, quality_models=[m], batch_size=8, progress=False)
    out[m.name] = out[m.name].assessors[m.name]
  mag = load(cfg["fr_models"]["MagFace"]["checkpoint"])
  s = score(None, ds.images, fr_models=[FRModel("m", mag.config, mag[1:])], progress=False)
  out["MagFace"] = np.linalg.norm(s.fr["m"]["embeddings"].astype(np.float64), axis=1)
  return out


def test_the_job_gives_each_assessors_own_qualities(job):
  d, cfg, refs, _, ds, scores = job
  got, alone = _job_qualities(cfg, ds, scores), _alone(cfg, ds)
  assert list(got) == list(cfg["quality_methods"])
  for name, q in got.items():
    assert q.shape == (len(ds.images),) and q.dtype == np.float32, name
    np.testing.assert_allclose(q, alone[name], rtol=1e-6, atol=0, err_msg=name)
  # Against the PyTorch references, on each release's input: CR-FIQA BGR (x/255 - .5)/.5,
  # MagFace BGR x/255.
  imgs = ds.images.read(range(len(ds.images)))
  rgb = imgs if ds.images.channel_order == "rgb" else imgs[..., ::-1]
  bgr = rgb[..., ::-1].astype(np.float32)
  with torch.no_grad():
    _, qs = refs["crfiqa"](torch.from_numpy((bgr / 255 - 0.5) / 0.5).permute(0, 3, 1, 2))
  np.testing.assert_allclose(got["CR-FIQA(S)"], qs[:, 0].numpy(), atol=2e-4, rtol=2e-4)
  mag = reference_embedding(refs["mag"], np.ascontiguousarray(bgr / 255))
  np.testing.assert_allclose(got["MagFace"], np.linalg.norm(mag, axis=1), atol=2e-4, rtol=2e-4)
  np.testing.assert_allclose(got["MagFace(own)"], got["MagFace"], rtol=1e-5)
  # SER-FIQ and GraFIQs called directly on the whole set (one batch): the job's batches of 8
  # give the same per-image qualities (SER-FIQ's masks follow the image index, not the batch).
  ids = np.arange(len(imgs), dtype=np.uint32)
  arc, mag = load(f"{d}/arc"), load(f"{d}/mag")
  x = fr_input(imgs, ds.images.channel_order, arc.config)  # SER-FIQ: the network's own rule
  q = serfiq_quality(nnx.merge(*arc[1:]), x, passes=6, key=jax.random.key(3), image_ids=ids)
  np.testing.assert_allclose(got["SER-FIQ"], q, rtol=1e-5, atol=1e-6)
  x = fr_input(imgs, ds.images.channel_order, mag.config, "bgr")  # GraFIQs' release: BGR
  q = grafiqs_quality(nnx.merge(*mag[1:]), x, ("block2",))["block2"]
  np.testing.assert_allclose(got["GraFIQs"], q, rtol=1e-5)
  assert (np.asarray(q) < 0).all()  # minus the gradient sums: higher = better


def test_each_assessor_has_the_rows_and_curves_of_an_exit(job):
  """An assessor's row equals the single exit of an analysis of its quality alone."""
  _, cfg, _, results, ds, scores = job
  got = _job_qualities(cfg, ds, scores)
  for _, fr, an in results.results:
    rows = [r for r in an.rows if r["kind"] == "assessor"]
    assert [r["variant"] for r in rows] == list(got), fr
    assert list(an.assessor_curves) == list(got)
    assert list(an.plotted()) == [*an.curves, *got]  # the ERC/EDC plots draw them
    for r in rows:
      alone = analyse(
        got[r["variant"]][:, None],
        *_pairs(cfg, fr),
        cost=[1.0],
        rules=("mean",),
        memory_mb=64,
        **{k: an.metrics[k] for k in ("fmrs", "edc_fmr", "edc_limits")},
      ).rows[0]
      for k, v in alone.items():
        if k.startswith(("erc_", "edc_", "fnmr", "halve")):
          np.testing.assert_allclose(r[k], v, rtol=1e-12, err_msg=f"{fr} {r['variant']} {k}")
      curve = an.assessor_curves[r["variant"]]
      assert curve["fine_fnmr"].shape == (96, 1) and curve["edc_discard"][-1] == 1.0


def _pairs(cfg, fr):
  """The pairs of the job's saved inputs of FR model `fr`: a, b, labels, comparison."""
  z = PairInputs.load(inputs_path(cfg["out_dir"], "demo", fr))
  return z.a, z.b, z.labels, z.comparison


def _md_tables(text: str) -> list[list[list[str]]]:
  tables, cur = [], None
  for line in text.splitlines():
    if line.startswith("| assessor"):
      cur = []
      tables.append(cur)
    elif line.startswith("|") and cur is not None and not line.startswith("|---"):
      cur.append([c.strip() for c in line.strip("|").split("|")])
    elif not line.startswith("|"):
      cur = None
  return tables


def test_cross_benchmark_rows_with_the_best_in_bold(job):
  _, cfg, _, results, _, _ = job
  out = cfg["out_dir"]
  md = open(os.path.join(out, "cross_benchmark.md")).read()
  tables = _md_tables(md)
  crosses = cross.cross_tables(results.results)
  assert len(tables) == len(crosses) == 2  # ERC at one FMR, EDC at one limit
  for t, c in zip(tables, crosses, strict=True):
    names = [row[0] for row in t]
    i = names.index("depth-weighted (all exits)")
    assessors = list(cfg["quality_methods"])
    assert names[i + 1 : i + 1 + len(assessors)] == assessors  # beside exits and fusion
    for (dataset, fr), j in zip(c.columns, range(len(c.columns)), strict=True):
      an = next(an for d2, f2, an in results.results if (d2, f2) == (dataset, fr))
      for name in assessors:
        row = next(r for r in an.rows if r["variant"] == name)
        np.testing.assert_equal(c.values[c.assessors.index(name), j], row[c.metric])
      cells = [row[j + 1] for row in t]
      values = [float(x.strip("*")) for x in cells]
      low = np.nanmin(values)
      assert [x.startswith("**") for x in cells] == [v == low for v in values]
  csv = open(os.path.join(out, "cross_benchmark.csv")).read()
  tex = open(os.path.join(out, "cross_benchmark.tex")).read()
  for name in cfg["quality_methods"]:
    assert csv.count(f",{name},{name},") == 2 and tex.count(f"\n{name} & ") == 2
  # An assessor that is the best of a column is the bold one there.
  c = crosses[0]
  k = c.assessors.index("MagFace")
  c.values[k, 0] = np.nanmin(c.values[:, 0]) - 0.01
  assert c.best()[:, 0].tolist() == [i == k for i in range(len(c.assessors))]
  line = next(s for s in cross.to_latex([c]).splitlines() if s.startswith("MagFace &"))
  assert line.split(" & ")[1].startswith("\\textbf{")


WORKER = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    from exfiqa_jax import data
    from exfiqa_jax.evaluation.run import quality_models
    from exfiqa_jax.models.checkpoint import load
    from exfiqa_jax.scoring.score import FRModel, score
    args = json.loads(sys.argv[1])
    cfg = args["cfg"]
    ds = data.load("verification_bin/demo", cfg["data_dir"])
    mag = load(cfg["fr_models"]["MagFace"]["checkpoint"])
    s = score(None, ds.images, fr_models=[FRModel("MagFace", mag.config, mag[1:])],
              quality_models=quality_models(cfg)[0], batch_size=8, progress=False)
    np.savez(args["out"], **s.assessors, MagFace=s.fr["MagFace"]["embeddings"])
    print("devices", jax.device_count())
""")


def test_eight_devices_give_the_qualities_of_one(job, tmp_path):
  d, cfg, _, _, ds, scores = job
  script = tmp_path / "worker.py"
  script.write_text(WORKER)
  env = {
    **os.environ,
    "PYTHONPATH": ROOT,
    "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
    "JAX_PLATFORMS": "cpu",
  }
  args = json.dumps({"cfg": cfg, "out": str(tmp_path / "q.npz")})
  p = subprocess.run(
    [sys.executable, str(script), args], env=env, capture_output=True, text=True, timeout=600
  )
  assert p.returncode == 0, p.stderr[-3000:]
  assert "devices 8" in p.stdout
  z = np.load(tmp_path / "q.npz")
  one = _job_qualities(cfg, ds, scores)
  for m in quality_models(cfg)[0]:
    # float32 rounding only: 8 devices convolve 1 image each, one device 8 at a time
    # (measured: 2.1e-6 abs, 1e-5 rel on CR-FIQA qualities of magnitude ~1)
    np.testing.assert_allclose(z[m.name], one[m.name], rtol=2e-5, atol=2e-5, err_msg=m.name)
  mag = np.linalg.norm(z["MagFace"].astype(np.float64), axis=1)
  np.testing.assert_allclose(mag, one["MagFace"], rtol=2e-5)


def test_assessor_scoring_resumes_and_refuses_other_settings(job, tmp_path):
  """Chunks hold each assessor's quality; a restart scores only the missing chunk and
  gives the same qualities; other SER-FIQ settings are another run, refused."""
  _, cfg, _, _, ds, _ = job
  models = quality_models(cfg)[0]
  out = str(tmp_path / "run")
  kw = dict(quality_models=models, batch_size=8, chunk_size=16, progress=False)
  first = score(None, ds.images, out, **kw)
  chunks = sorted(p for p in os.listdir(out) if p.startswith("chunk-"))
  assert len(chunks) == -(-len(ds.images) // 16)
  os.remove(os.path.join(out, chunks[1]))
  again = score(None, ds.images, out, **kw)
  for m in models:
    np.testing.assert_array_equal(again.assessors[m.name], first.assessors[m.name])
  other = [
    dataclasses.replace(m, settings=(("p", 0.5), ("passes", 6), ("seed", 4)))
    if m.method == "SER-FIQ"
    else m
    for m in models
  ]
  with pytest.raises(ValueError, match=r"this folder holds another run \(differs in .*quality"):
    score(None, ds.images, out, **{**kw, "quality_models": other})
