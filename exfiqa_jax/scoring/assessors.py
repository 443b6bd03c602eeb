"""The quality assessors of the field beside ViT-FIQA's exits: one record each.

    method = METHODS["CR-FIQA"]
    method.sources      # ("checkpoint",): where its network comes from
    method.settings     # {name: Setting(default, check, wants)}: its options
    q = method.compute(model, x, rows, **settings)  # float32 [B], higher = better

A job names its assessors in `quality_methods` (`exfiqa_jax.evaluation.job_config`):
`{name: {"checkpoint": folder} or {"fr_model": FR model of the job}, options...}`; the
method is `"method"` when given, else the name up to a "(" ("CR-FIQA(L)" is CR-FIQA).
Every quality is given as higher = better (GraFIQs' gradient sums negated).

A network-based method runs in the scoring pass itself (`scoring.score`: its own
compiled step on the same uint8 batches, after the same input rule as the FR models,
`models.registry.fr_input`); MagFace's quality comes from the embeddings of its FR
model, which the pass computes anyway (no second pass).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

SOURCES = ("checkpoint", "fr_model")  # a converted checkpoint of its own, or a job FR model
GRAFIQS_VARIANTS = ("image", "block1", "block2", "block3", "block4")


@dataclasses.dataclass(frozen=True)
class Setting:
  """One option of a method: its default, its check, what the check wants."""

  default: Any
  check: Callable[[Any], bool]
  wants: str


@dataclasses.dataclass(frozen=True)
class QualityMethod:
  """One assessor: what it needs, its options, how its quality is computed."""

  name: str
  sources: tuple[str, ...]  # of SOURCES: where its network may come from
  kind: str  # the model kind its network must be (models.registry.KINDS)
  family: str | None  # the FR family its network must be (MagFace), else any
  settings: Mapping[str, Setting]
  # (nnx model, x float32 [B, S, S, 3] its input, rows uint32 [B] global image indices,
  # **settings) -> float32 [B], higher = better; traced in the scoring step.
  compute: Callable[..., jax.Array]
  # raw FR embeddings [N, D] -> [N]: used instead of `compute` when the network is a job
  # FR model ("fr_model"), whose embeddings the pass computes anyway; None: never.
  from_embeddings: Callable[[np.ndarray], np.ndarray] | None
  # The channel order its release's evaluation feeds the network (None: the network's own,
  # its family's); a job's spec overrides it with "channel_order".
  channel_order: str | None
  direction: str  # what "higher" means, for the docs and the report
  cost: str  # what it costs over a plain FR forward
  where: str  # the upstream files it follows


def _positive_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _integer(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _crfiqa(model, x, rows):
  return model(x)[1]


def _serfiq(model, x, rows, *, passes: int, p: float, seed: int):
  from exfiqa_jax.models.serfiq import serfiq_quality

  key = jax.random.key(seed)
  return serfiq_quality(model, x, passes=passes, p=p, key=key, image_ids=rows)


def _grafiqs(model, x, rows, *, variant: str):
  from exfiqa_jax.models.grafiqs import grafiqs_quality

  return grafiqs_quality(model, x, variants=(variant,))[variant]


def _magface(model, x, rows):
  return jnp.linalg.norm(model(x), axis=1)


def magface_quality(embeddings: np.ndarray) -> np.ndarray:
  """MagFace's quality: the L2 norm of the raw embedding [N, D] -> [N] (float64 sum)."""
  return np.linalg.norm(np.asarray(embeddings, np.float64), axis=1).astype(np.float32)


METHODS: dict[str, QualityMethod] = {
  m.name: m
  for m in (
    QualityMethod(
      name="CR-FIQA",
      sources=("checkpoint",),
      kind="cr_fiqa",
      family=None,  # its kind has one family
      settings={},
      compute=_crfiqa,
      from_embeddings=None,
      channel_order=None,  # its config's: BGR (models.fr_config.RELEASES["cr-fiqa"])
      direction="higher qs = better",
      cost="one FR forward (its own iResNet) and a 512 -> 1 linear head",
      where="fdbtrs/CR-FIQA backbones/iresnet.py, evaluation/getQualityScore.py",
    ),
    QualityMethod(
      name="MagFace",
      sources=("fr_model", "checkpoint"),
      kind="face_recognition",
      family="magface",
      settings={},
      compute=_magface,
      from_embeddings=magface_quality,
      channel_order=None,
      direction="higher embedding norm = better",
      cost="free on a job FR model (the norm of the embeddings the pass computes anyway); "
      "one FR forward on a checkpoint of its own",
      where="IrvingMeng/MagFace inference/gen_feat.py (the raw feature's norm)",
    ),
    QualityMethod(
      name="SER-FIQ",
      sources=("fr_model", "checkpoint"),
      kind="face_recognition",
      family=None,
      settings={
        "passes": Setting(
          100,
          lambda v: _positive_int(v) and v >= 2,
          "an integer >= 2, the number of stochastic passes (T; pairs of them are compared)",
        ),
        "p": Setting(
          0.5,
          lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1,
          "a dropout rate in (0, 1)",
        ),
        "seed": Setting(0, _integer, "an integer (the jax.random key of the dropout masks)"),
      },
      compute=_serfiq,
      from_embeddings=None,
      channel_order=None,  # the FR network's own input rule
      direction="higher = better (2 / (1 + exp(mean pairwise distance)))",
      cost="the backbone once per image, the head (dropout, fc, features) `passes` times",
      where="pterhoer/FaceImageQuality face_image_quality.py (models/serfiq.py)",
    ),
    QualityMethod(
      name="GraFIQs",
      sources=("checkpoint", "fr_model"),
      kind="face_recognition",
      family=None,
      settings={
        "variant": Setting(
          "image",
          lambda v: v in GRAFIQS_VARIANTS,
          f"one of {GRAFIQS_VARIANTS} (the gradient taken at the image or a block output)",
        ),
      },
      compute=_grafiqs,
      from_embeddings=None,
      # extract_grafiqs.py reads with cv2.imread and converts only with --bgr2rgb: BGR.
      channel_order="bgr",
      direction="lower gradient = better; the tables use minus the sum (higher = better)",
      cost="one forward and one backward pass per image (per-image BN statistics)",
      where="jankolf/GraFIQs extract_grafiqs.py, backbones/bn.py (models/grafiqs.py)",
    ),
  )
}


def method_of(name: str, spec: Mapping[str, Any]) -> str:
  """The method of a job's assessor: its spec's "method", else its name up to a "("."""
  return spec.get("method") or name.split("(")[0].strip()


def resolve(method: QualityMethod, spec: Mapping[str, Any]) -> dict[str, Any]:
  """The method's settings with the spec's values on top (already checked)."""
  return {k: spec.get(k, s.default) for k, s in method.settings.items()}


SPEC_KEYS = ("method", *SOURCES, "channel_order")  # besides the method's settings


def check_spec(name: str, spec: Any, fr_models: Mapping[str, str], where: str) -> QualityMethod:
  """One assessor's spec -> its method; raises in one line naming `where` and the key.

  fr_models: the job's FR models, {name: their kind ("checkpoint", "embeddings", "self")}.
  Files are not opened here."""
  key = f"quality_methods.{name}"
  if not isinstance(spec, dict):
    raise TypeError(f"{where}: {key} must be a dict such as {{'checkpoint': folder}}; got {spec!r}")
  if "/" in name or not name.strip():
    raise ValueError(f"{where}: {key}: an assessor's name must be non-empty, without '/'")
  method = METHODS.get(method_of(name, spec))
  if method is None:
    raise KeyError(
      f"{where}: {key}: unknown quality method {method_of(name, spec)!r}; one of "
      f"{list(METHODS)} (name it by its method, e.g. 'CR-FIQA(L)', or give 'method')"
    )
  known = (*SPEC_KEYS, *method.settings)
  unknown = sorted(set(spec) - set(known))
  if unknown:
    raise KeyError(f"{where}: {key} has unknown keys {unknown}; known: {list(known)}")
  given = [s for s in SOURCES if s in spec]
  if len(given) != 1 or given[0] not in method.sources:
    wants = " or ".join(f"'{s}'" for s in method.sources)
    raise ValueError(f"{where}: {key} needs exactly one of {wants} ({method.name})")
  if given[0] == "fr_model":
    fr = spec["fr_model"]
    if fr not in fr_models:
      raise KeyError(f"{where}: {key}.fr_model {fr!r} is not in fr_models {sorted(fr_models)}")
    if fr_models[fr] != "checkpoint":
      raise ValueError(
        f"{where}: {key}.fr_model {fr!r} must run from a checkpoint in the job (fr_models."
        f"{fr} = {{'checkpoint': folder}}): {method.name} needs its network or raw embeddings"
      )
  elif not isinstance(spec["checkpoint"], str) or not spec["checkpoint"]:
    raise TypeError(f"{where}: {key}.checkpoint must be a folder; got {spec['checkpoint']!r}")
  if spec.get("channel_order", "rgb") not in ("rgb", "bgr"):
    raise ValueError(
      f"{where}: {key}.channel_order {spec['channel_order']!r} is not 'rgb' or 'bgr'"
    )
  for k, s in method.settings.items():
    if k in spec and not s.check(spec[k]):
      raise TypeError(f"{where}: {key}.{k} must be {s.wants}; got {spec[k]!r}")
  return method


@dataclasses.dataclass(frozen=True)
class QualityModel:
  """An assessor run in the scoring pass on a network (CR-FIQA, SER-FIQ, GraFIQs):
  `exfiqa_jax.load(path)` of its checkpoint or of its FR model's."""

  name: str  # the job's name for it ("CR-FIQA(L)")
  method: str  # its METHODS key
  config: Any  # its network's config (FRConfig or CRFIQAConfig)
  variables: tuple  # (graphdef, params, batch_stats)
  settings: tuple = ()  # ((option, value), ...): hashable, for the cached step
  channel_order: str | None = None  # the order fed to the network (default: see model_order)

  @property
  def model_order(self) -> str:
    """The channel order the network is fed: the spec's, else its release evaluation's
    (METHODS), else its family's."""
    return self.channel_order or METHODS[self.method].channel_order or self.config.channel_order


@functools.lru_cache(maxsize=16)
def make_quality_step(
  graphdef, mesh, config, method: str, settings: tuple, *, channel_order: str, model_order: str
):
  """jit of (params, batch_stats, uint8 [B, S, S, 3] stored in `channel_order`, rows uint32
  [B] global image indices) -> {"quality": float32 [B]}: the FR input rule of `config`
  (channels to `model_order`), then the method's compute, in float32. Batch-sharded on
  the mesh; cached per model and mesh. The returned callable has `takes_rows` set."""
  from flax import nnx

  from exfiqa_jax.backend import AXIS
  from exfiqa_jax.models.registry import fr_input

  fn, opts = METHODS[method].compute, dict(settings)
  data, rep = jax.NamedSharding(mesh, jax.P(AXIS)), jax.NamedSharding(mesh, jax.P())

  def step(params, batch_stats, images, rows):
    x = fr_input(images, channel_order, config, model_order)
    model = nnx.merge(graphdef, params, batch_stats)
    return {"quality": jnp.asarray(fn(model, x, rows, **opts), jnp.float32)}

  jitted = jax.jit(step, in_shardings=(rep, rep, data, data), out_shardings=data)

  def call(params, batch_stats, images, rows):
    return jitted(params, batch_stats, images, rows)

  call.takes_rows = True
  return call
