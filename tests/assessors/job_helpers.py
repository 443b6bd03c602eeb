"""A tiny evaluation job with every quality assessor (random weights), shared by the
assessor job tests: its folder, its config, and the checkpoints it names."""

from __future__ import annotations

import os

from tests.helpers import import_torch

torch = import_torch()

import exfiqa_jax
from exfiqa_jax.convert import FAMILIES, convert_file
from exfiqa_jax.data.synthetic import make_verification_bin
from tests.fr_helpers import reference_state_dict, tiny
from tests.score_helpers import TINY, random_variables

# The assessors of the job (name -> spec, `{d}` the job folder); SER-FIQ with few passes.
QUALITY_METHODS = {
  "CR-FIQA(S)": {"checkpoint": "{d}/crfiqa"},
  "MagFace": {"fr_model": "MagFace"},  # from the pass's embeddings
  "MagFace(own)": {"checkpoint": "{d}/mag"},  # the same network as an assessor of its own
  "SER-FIQ": {"checkpoint": "{d}/arc", "passes": 6, "seed": 3},
  "GraFIQs": {"fr_model": "MagFace", "variant": "block2"},
}


def write_checkpoints(d: str) -> dict[str, object]:
  """The ViT-FIQA, ArcFace, MagFace and CR-FIQA checkpoints of the job under `d`, and
  their PyTorch references {name: module}."""
  _, params, stats = random_variables(seed=2)
  exfiqa_jax.save(f"{d}/vit", TINY, params, stats)
  refs = {}
  for name, family, seed in (("arc", "arcface", 4), ("mag", "magface", 5)):
    refs[name], sd = reference_state_dict(tiny(family), seed=seed)
    torch.save(sd, f"{d}/{name}.pt")
    convert_file(f"{d}/{name}.pt", f"{d}/{name}", family=family)
  f = FAMILIES["cr-fiqa"]
  refs["crfiqa"] = f.randomize(f.reference(tiny("cr-fiqa")), 6)
  torch.save(refs["crfiqa"].state_dict(), f"{d}/7backbone.pth")
  convert_file(f"{d}/7backbone.pth", f"{d}/crfiqa", family="cr-fiqa")
  return refs


def job_config(d: str, out: str = "out") -> dict:
  make_verification_bin(os.path.join(d, "files", "demo.bin"), num_pairs=40, num_ids=8)
  return dict(
    checkpoint=f"{d}/vit",
    out_dir=f"{d}/{out}",
    data_dir=f"{d}/tfds",
    datasets=dict(demo=dict(builder="verification_bin", files=f"{d}/files")),
    fr_models={"MagFace": {"checkpoint": f"{d}/mag"}},
    quality_methods={
      name: {k: v.format(d=d) if isinstance(v, str) else v for k, v in spec.items()}
      for name, spec in QUALITY_METHODS.items()
    },
    scoring=dict(batch_size=8),
    metrics=dict(fmrs=(1e-1,), edc_fmr=1e-1, edc_limits=(0.5,)),
    sweep=dict(rules=("mean", "weighted"), norms=("none",), top_k=1, memory_mb=64),
    weights=dict(powers=(0.0, 1.0), simplex=8, learn_steps=5, seed=0),
  )
