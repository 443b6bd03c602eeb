"""The model kinds: one record each of what the evaluation path needs of a network.

    kind = KINDS[config.kind]                   # "vit_fiqa", "face_recognition", "cr_fiqa"
    model = kind.build(config, nnx.Rngs(0))
    x = kind.prepare(uint8_images, "rgb", config)  # the family's input rule, traceable
    arrays = kind.outputs(model(x))             # {"exit_scores": [B, L], "embeddings": [B, D]}

A checkpoint stores its kind's name (`models.checkpoint`); the conversion side of
a family (files, key table, PyTorch reference) is `exfiqa_jax.convert.families`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from exfiqa_jax.data.preprocess import check_channel_order, normalize
from exfiqa_jax.models.config import ViTConfig
from exfiqa_jax.models.crfiqa import CRFIQA
from exfiqa_jax.models.fr_config import CRFIQAConfig, FRConfig
from exfiqa_jax.models.iresnet import IResNet
from exfiqa_jax.models.irse import IRBackbone
from exfiqa_jax.models.vit import ViTFIQA

# Rows per pass through the ViT blocks on CPU: there a batch of 64 in one pass ran
# 30% slower than the same images as 4 passes of 16 in one program (the
# activations of a big batch fall out of cache); accelerators take the batch whole.
CPU_MICRO_BATCH = 16
# The face-recognition backbones on CPU: iresnet100 at batch 64 ran 1.25x (float32) and
# 1.6x (bfloat16) faster as 8 passes of 8 images in one program, with Winograd from 128
# channels, than in one pass (docs/performance.md, "Third pass on issue 25"; shared cores):
# the Winograd tiles and activations of 8 images stay in cache.
FR_CPU_MICRO_BATCH = 8


@dataclasses.dataclass(frozen=True)
class Kind:
  """A network kind: its config, its module, its input rule and its named outputs."""

  name: str  # the checkpoint's `kind`
  config_type: type
  build: Callable[[Any, nnx.Rngs], nnx.Module]
  modules: tuple[type, ...]  # the module classes `build` makes
  # (uint8 [B, S, S, 3] stored in `stored_order`, stored_order, config, model_order) ->
  # the network's float32 input. Traceable.
  prepare: Callable[..., jax.Array]
  outputs: Callable[[Any], dict[str, jax.Array]]  # the model's output -> named [B, ...] arrays
  what: str  # "a ViT-FIQA model", for messages
  command: str  # the command that runs it
  cpu_micro_batch: int | None = None  # rows per pass on CPU (None: the batch whole)


def fr_input(
  images: jax.Array, stored_order: str, config: FRConfig, model_order: str | None = None
) -> jax.Array:
  """uint8 [B, S, S, 3] stored in `stored_order` -> the network's float32 input.

  Channels are swapped when the stored order differs from the one the network
  takes (`model_order`, default the family's); then scaled as the release's
  evaluation did: (x / 255 - 0.5) / 0.5 ("half"), x / 255 ("unit"), or (x - 127.5) * 0.0078125
  ("mxnet", inside the graph of insightface's MXNet models). Traceable.
  """
  model_order = model_order or config.channel_order
  check_channel_order(stored_order)
  check_channel_order(model_order)
  x = images.astype(jnp.float32)
  if stored_order != model_order:
    x = x[..., ::-1]
  if config.input_scale == "mxnet":
    return (x - 127.5) * 0.0078125
  return (x / 255.0 - 0.5) / 0.5 if config.input_scale == "half" else x / 255.0


def _vit_input(images, stored_order: str, config=None, model_order: str | None = None):
  """The ViT-FIQA rule: RGB, (x / 255 - 0.5) / 0.5 (`data.preprocess.normalize`)."""
  return normalize(images, stored_order)


def _present(**arrays) -> dict[str, jax.Array]:
  return {k: v for k, v in arrays.items() if v is not None}


FR_ARCHS = {"iresnet": IResNet, "irse": IRBackbone}

KINDS = {
  "vit_fiqa": Kind(
    name="vit_fiqa",
    config_type=ViTConfig,
    build=lambda config, rngs: ViTFIQA(config, rngs=rngs),
    modules=(ViTFIQA,),
    prepare=_vit_input,
    outputs=lambda out: _present(exit_scores=out.exits, embeddings=out.embedding),
    what="a ViT-FIQA model",
    command="exfiqa score",
    cpu_micro_batch=CPU_MICRO_BATCH,
  ),
  "face_recognition": Kind(
    name="face_recognition",
    config_type=FRConfig,
    build=lambda config, rngs: FR_ARCHS[config.arch](config, rngs=rngs),
    modules=tuple(FR_ARCHS.values()),
    prepare=fr_input,
    outputs=lambda embedding: {"embeddings": embedding},
    what="a face-recognition backbone",
    command="exfiqa embed",
    cpu_micro_batch=FR_CPU_MICRO_BATCH,
  ),
  # CR-FIQA: an iResNet with a quality head; the FR input rule of its release ("cr-fiqa").
  "cr_fiqa": Kind(
    name="cr_fiqa",
    config_type=CRFIQAConfig,
    build=lambda config, rngs: CRFIQA(config, rngs=rngs),
    modules=(CRFIQA,),
    prepare=fr_input,
    outputs=lambda out: {"embeddings": out[0], "quality": out[1]},
    what="a CR-FIQA model",
    command="exfiqa evaluate (quality_methods)",
    cpu_micro_batch=FR_CPU_MICRO_BATCH,
  ),
}
_BY_MODULE = {m: k for k in KINDS.values() for m in k.modules}


def kind_of(config: Any) -> Kind:
  return KINDS[config.kind]


def kind_of_graph(graphdef: nnx.GraphDef) -> Kind:
  """The kind of a model's graphdef (its root module's class)."""
  return _BY_MODULE[graphdef.nodes[0].type]


def config_to_dict(config: Any) -> dict[str, Any]:
  """The config as stored in a checkpoint: its fields and its `kind`."""
  return {"kind": config.kind, **config.to_dict()}


def config_from_dict(d: dict[str, Any]) -> Any:
  """The config of `config_to_dict`; a dict without "kind" (checkpoints written before
  kinds were stored) is of the first kind whose config has every one of its fields."""
  d = dict(d)
  name = d.pop("kind", None) or next(
    (k.name for k in KINDS.values() if set(d) <= _fields(k.config_type)), "vit_fiqa"
  )
  if name not in KINDS:
    raise KeyError(f"unknown model kind {name!r}; one of {', '.join(KINDS)}")
  return KINDS[name].config_type.from_dict(d)


def _fields(config_type: type) -> set[str]:
  return {f.name for f in dataclasses.fields(config_type)}
