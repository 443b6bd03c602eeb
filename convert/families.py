"""Every model family the converter knows: one record each, in one table.

    family = FAMILIES["magface"]
    config, params, batch_stats = from_torch(family.read(path), "magface")   # convert.core

A `Family` holds everything that differs between releases; the driver
(`exfiqa_jax.convert.core`: import, export, key/shape/fill checks), `verify` and
`files` hold none of it. Its model side (the Flax module, the input rule, the
named outputs) is its config's kind in `exfiqa_jax.models.registry`.

Adding a family (docs/layout.md, "Adding a model family"): its Flax model (a
module and, for a new kind, one `KINDS` entry), its key table (`Entry` lists from
`convert.mapping`'s pieces), its PyTorch reference in `convert/references/`, and one
`Family` record below. A family whose files are not PyTorch ones gives its own
`read` (arcface-mxnet: `convert/mxnet_params.py`) and, where its files state config
values the shapes cannot tell, `stated`; one whose network takes another input gives it
through its config's kind (or, within a kind, its release's input rule).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from exfiqa_jax.convert import fr_mapping, mapping
from exfiqa_jax.convert.fr_infer import check_arch, detect_arch, infer_fr, refuse_unflagged
from exfiqa_jax.convert.infer import infer_vit
from exfiqa_jax.convert.mapping import Entry
from exfiqa_jax.convert.mxnet_params import read_mxnet
from exfiqa_jax.convert.references import cr_fiqa as crfiqa_ref
from exfiqa_jax.convert.references import face_recognition as fr_ref
from exfiqa_jax.convert.references import vit_fiqa as vit_ref
from exfiqa_jax.convert.safe_load import load_torch
from exfiqa_jax.convert.wrappers import (
  StateDict,
  plain,
  state_dict,
  unwrap_magface,
  wrap_magface,
)
from exfiqa_jax.models.fr_config import RELEASES, CRFIQAConfig, FRConfig
from exfiqa_jax.models.registry import fr_input

Outputs = dict[str, np.ndarray]  # named [B, ...] arrays compared by `verify`


@dataclasses.dataclass(frozen=True)
class Family:
  """One release's checkpoints: how to read, recognise, size, map and check them."""

  name: str
  read: Callable[[str], Any]  # a file -> its loaded object (weights only, nothing run)
  detect: Callable[[Any], bool]  # does a loaded object look like this family's backbone
  unwrap: Callable[[Any], StateDict]  # loaded object -> backbone state_dict; ValueError else
  wrap: Callable[[Any, dict], Any]  # (config, state_dict) -> the release's file layout
  infer: Callable[..., Any]  # (state_dict, **options) -> config, from keys and shapes
  entries: Callable[[Any], list[tuple[str, Entry, int | None]]]  # config -> its key table
  ignored: Callable[[Any], tuple[str, ...]]  # source keys no Flax variable reads
  written_back: Callable[[Any], dict[str, torch.Tensor]]  # exported beside the table's keys
  table: str  # the file of its key table, for messages
  reference: Callable[[Any, StateDict], torch.nn.Module]  # (config, keys) -> fresh, eval mode
  randomize: Callable[[torch.nn.Module, int], torch.nn.Module]  # random weights, for tests
  test_inputs: Callable[[Any], np.ndarray]  # config -> float32 [B, S, S, 3] network input
  reference_outputs: Callable[[torch.nn.Module, torch.Tensor], Outputs]  # NCHW input
  outputs: Callable[[Any], Outputs]  # the Flax model's output, named as the reference's
  settings: tuple[str, ...] = ()  # config fields the shapes cannot tell, read from SRC.json
  # The config a loaded object states itself (an MXNet graph's eps), else None: it wins over
  # the one inferred from the shapes, as SRC.json's does.
  stated: Callable[[Any], Any] = lambda obj: None
  quality: bool = False  # whether its model gives a quality score besides the embedding


def _vit_detect(obj: Any) -> bool:
  try:
    return {"qs_token", "blocks.0.attn.qkv.weight"} <= set(state_dict(obj))
  except ValueError:
    return False


def _vit_unwrap(obj: Any) -> StateDict:
  refuse_unflagged(obj)  # a face-recognition backbone: say which --family converts it
  return state_dict(obj)


def _vit_named(embedding, exits) -> Outputs:
  exits = np.asarray(exits)
  return {"embedding": embedding, **{f"exit {i + 1}": exits[:, i] for i in range(exits.shape[1])}}


def _vit_reference_outputs(model: torch.nn.Module, x: torch.Tensor) -> Outputs:
  return _vit_named(*(t.numpy() for t in model(x)))


def _vit_test_inputs(config) -> np.ndarray:
  """Deterministic test images: float32 [4, H, W, 3] in [-1, 1]."""
  s = config.image_size
  return np.random.default_rng(0).uniform(-1, 1, (4, s, s, 3)).astype(np.float32)


def _fr_test_inputs(config: FRConfig) -> np.ndarray:
  """Random uint8 faces [4, S, S, 3] through the family's input rule."""
  s = config.image_size
  faces = np.random.default_rng(0).integers(0, 256, (4, s, s, 3), dtype=np.uint8)
  return np.asarray(fr_input(faces, config.channel_order, config))


VIT_FIQA = Family(
  name="vit_fiqa",
  read=load_torch,
  detect=_vit_detect,
  unwrap=_vit_unwrap,
  wrap=plain,
  infer=infer_vit,
  entries=mapping.entries,
  ignored=mapping.ignored,
  written_back=mapping.written_back,
  table="convert/mapping.py",
  reference=lambda config, sd=(): vit_ref.ViTFIQAReference(
    **config.to_dict(), with_mask_token=not sd or "mask_token" in sd
  ).eval(),
  randomize=vit_ref.randomize_,
  test_inputs=_vit_test_inputs,
  reference_outputs=_vit_reference_outputs,
  outputs=lambda out: _vit_named(np.asarray(out.embedding), out.exits),
  settings=("num_heads", "image_size"),
  quality=True,
)


def _own(obj: Any) -> tuple[None, Any]:
  return None, obj  # a PyTorch release file states no config


def face_recognition(
  name: str, unwrap=state_dict, wrap=plain, read=load_torch, parts=_own
) -> Family:
  """A face-recognition release of `models.fr_config.RELEASES` (its arch, eps, input).

  parts: a loaded object -> (the config it states or None, its PyTorch-named weights)."""
  arch = RELEASES[name].arch
  return Family(
    name=name,
    read=read,
    detect=lambda obj: detect_arch(parts(obj)[1]) == arch,
    unwrap=lambda obj: unwrap(parts(obj)[1]),
    wrap=wrap,
    infer=lambda sd, **options: infer_fr(sd, name),  # every size from the shapes
    entries=fr_mapping.entries,
    ignored=fr_mapping.ignored,
    written_back=fr_mapping.written_back,
    table="convert/fr_mapping.py",
    reference=lambda config, sd=(): fr_ref.reference_for(config),
    randomize=fr_ref.randomize_fr_,
    test_inputs=_fr_test_inputs,
    reference_outputs=lambda model, x: {"embedding": fr_ref.embedding(model, x).numpy()},
    outputs=lambda out: {"embedding": np.asarray(out)},
    stated=lambda obj: parts(obj)[0],
  )


def _read_mxnet_release(path: str) -> Any:
  """insightface's MXNet release (PREFIX-EPOCH.params, or PREFIX, beside PREFIX-symbol.json)
  -> (FRConfig from its graph, state_dict); any other file is the family's export layout
  (`exfiqa export`: a plain PyTorch iResNet state_dict), read weights-only."""
  if os.path.isfile(path) and not path.endswith(".params"):
    return load_torch(path)
  return read_mxnet(path)


def _mxnet_parts(obj: Any) -> tuple[Any, Any]:
  return obj if isinstance(obj, tuple) else (None, obj)  # read_mxnet's (config, state_dict)


# CR-FIQA: the iResNet of the face-recognition families (its key table, its inference
# from the shapes) plus the quality head `qs` by name.
QS_HEAD = ("qs.weight", "qs.bias")


def _crfiqa_detect(obj: Any) -> bool:
  try:
    return detect_arch(obj) == "iresnet" and set(QS_HEAD) <= set(state_dict(obj))
  except ValueError:
    return False


def _crfiqa_infer(sd: StateDict, **options) -> CRFIQAConfig:
  """The backbone's config from its shapes (the iResNet table); the head must be there."""
  check_arch(sd, "cr-fiqa")  # an iResNet, or say what the file holds instead
  missing = [k for k in QS_HEAD if k not in sd]
  if missing:
    raise ValueError(
      f"missing key {missing[0]!r}: CR-FIQA's quality head `qs` (Linear(512 -> 1) on the "
      "embedding) is not in the file; a plain iResNet converts with --family arcface, "
      "elasticface or magface"
    )
  backbone = {k: v for k, v in sd.items() if k not in QS_HEAD}
  return infer_fr(backbone, "cr-fiqa")  # a CRFIQAConfig (`FRConfig.for_family`)


def _crfiqa_entries(config: CRFIQAConfig) -> list:
  weight, bias = mapping._dense("qs", ("qs",), bias=True)
  return [*fr_mapping.entries(config), *((e.torch, e, None) for e in (weight, bias))]


CR_FIQA = Family(
  name="cr-fiqa",
  read=load_torch,
  detect=_crfiqa_detect,
  unwrap=state_dict,
  wrap=plain,
  infer=_crfiqa_infer,
  entries=_crfiqa_entries,
  ignored=fr_mapping.ignored,
  written_back=fr_mapping.written_back,
  table="convert/fr_mapping.py + convert/families.py (qs)",
  reference=lambda config, sd=(): crfiqa_ref.reference_for(config),
  randomize=fr_ref.randomize_fr_,
  test_inputs=_fr_test_inputs,
  reference_outputs=crfiqa_ref.outputs,
  outputs=lambda out: {"embedding": np.asarray(out[0]), "quality": np.asarray(out[1])},
  quality=True,
)


FAMILIES = {
  "vit_fiqa": VIT_FIQA,
  "arcface": face_recognition("arcface"),
  "elasticface": face_recognition("elasticface"),
  "magface": face_recognition("magface", unwrap=unwrap_magface, wrap=wrap_magface),
  "curricularface": face_recognition("curricularface"),
  "arcface-mxnet": face_recognition("arcface-mxnet", read=_read_mxnet_release, parts=_mxnet_parts),
  "cr-fiqa": CR_FIQA,
}


def family_named(name: str) -> Family:
  if name not in FAMILIES:
    raise ValueError(f"unknown model family {name!r}; one of {', '.join(FAMILIES)}")
  return FAMILIES[name]
