"""Is a checkpoint a face-recognition backbone, which one, and which `FRConfig` its shapes give.

The weights give the architecture (iResNet or IR), the blocks per stage, the
widths, the embedding size and, through the fc's input size, the image size;
the family (`--family`) gives what they cannot: eps, channel order, scaling.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from exfiqa_jax.convert.wrappers import StateDict
from exfiqa_jax.models.fr_config import QUALITY_FAMILIES, RELEASES, FRConfig, check_family

ARCH_NAMES = {
  "iresnet": "an insightface iResNet ('conv1', 'layer1.0.bn1', ..., 'fc', 'features')",
  "irse": "CurricularFace's IR backbone ('input_layer', 'body.N.res_layer', 'output_layer')",
}
# The families released as PyTorch files (arcface-mxnet is read by convert/mxnet_params.py).
TORCH_FAMILIES = [f for f, v in RELEASES.items() if v.input_scale != "mxnet"]
FAMILY_LIST = ", ".join(TORCH_FAMILIES)


def _keys(obj: Any) -> set[str]:
  """Backbone-relative keys of a state_dict or a training checkpoint, wrappers stripped."""
  if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
    obj = obj["state_dict"]
  if not isinstance(obj, Mapping):
    return set()
  out = set()
  for k in obj:
    if isinstance(k, str):
      for prefix in ("features.module.", "module.features.", "module."):
        k = k.removeprefix(prefix)
      out.add(k)
  return out


def detect_arch(obj: Any) -> str | None:
  """ "iresnet", "irse" or None for any loaded checkpoint object (no error)."""
  keys = _keys(obj)
  if {"conv1.weight", "layer1.0.bn1.weight", "fc.weight", "features.running_mean"} <= keys:
    return "iresnet"
  if {"input_layer.0.weight", "body.0.res_layer.0.weight", "output_layer.3.weight"} <= keys:
    return "irse"
  return None


def refuse_unflagged(obj: Any) -> None:
  """Without --family: an FR backbone is an error that says so and lists the families."""
  arch = detect_arch(obj)
  if arch is not None:
    raise ValueError(
      f"holds {ARCH_NAMES[arch]}, a face-recognition backbone, not ViT-FIQA; convert it "
      f"with --family, one of {FAMILY_LIST}"
    )


def check_arch(sd: StateDict, family: str) -> str:
  """The family's architecture, or a ValueError saying what the state_dict holds instead."""
  want = check_family(family).arch
  found = detect_arch(sd)
  if found == want:
    return want
  if found is not None:
    # a plain backbone of `found`: the families without a quality head (cr-fiqa has one)
    others = [f for f in TORCH_FAMILIES if RELEASES[f].arch == found and f not in QUALITY_FAMILIES]
    what = f"{ARCH_NAMES[found]} (--family {' or '.join(others)})"
  elif "blocks.0.attn.qkv.weight" in sd and "qs_token" in sd:
    what = "a ViT-FIQA backbone ('qs_token', 'blocks.N'); convert it without --family"
  else:
    tops = sorted({k.split(".")[0] for k in sd})
    what = f"top-level entries {tops[:12]}{' ...' if len(tops) > 12 else ''}"
  raise ValueError(f"--family {family} needs {ARCH_NAMES[want]}; found {what}")


def _shape(sd: StateDict, key: str, purpose: str) -> tuple[int, ...]:
  if key not in sd:
    raise ValueError(f"missing key '{key}', needed to infer the {purpose}")
  return tuple(sd[key].shape)


def _count(sd: StateDict, pattern: str) -> int:
  """1 + the largest N of keys matching `pattern` (with one (\\d+) group), else 0."""
  found = [int(m.group(1)) for k in sd if (m := re.match(pattern, k))]
  return 1 + max(found) if found else 0


def _stages_iresnet(sd: StateDict) -> tuple[int, list[int], list[int]]:
  stem = _shape(sd, "conv1.weight", "stem width")[0]
  layers, widths, s = [], [], 1
  while n := _count(sd, rf"layer{s}\.(\d+)\."):
    layers.append(n)
    widths.append(_shape(sd, f"layer{s}.0.conv1.weight", f"width of stage {s}")[0])
    s += 1
  return stem, layers, widths


def _stages_irse(sd: StateDict) -> tuple[int, list[int], list[int]]:
  """Stages start at body.0 and wherever the width changes: strides are not in the weights,
  so a stage keeping its predecessor's width cannot be told from more blocks of it."""
  stem = _shape(sd, "input_layer.0.weight", "stem width")[0]
  layers, widths = [], []
  for n in range(_count(sd, r"body\.(\d+)\.")):
    width = _shape(sd, f"body.{n}.res_layer.1.weight", f"width of block {n}")[0]
    if not widths or width != widths[-1]:
      layers.append(0)
      widths.append(width)
    layers[-1] += 1
  return stem, layers, widths


ARCH_STAGES = {  # arch -> (its stages from the keys, the key of its fc)
  "iresnet": (_stages_iresnet, "fc.weight"),
  "irse": (_stages_irse, "output_layer.3.weight"),
}


def infer_fr(sd: StateDict, family: str) -> FRConfig:
  """The `FRConfig` of a backbone state_dict (wrappers already stripped) of `family`."""
  arch = check_arch(sd, family)
  stages, fc = ARCH_STAGES[arch]
  stem, layers, widths = stages(sd)
  embedding_size, fc_in = _shape(sd, fc, "embedding size")
  grid = math.isqrt(fc_in // widths[-1]) if widths and fc_in % widths[-1] == 0 else 0
  if not layers or grid * grid * widths[-1] != fc_in:
    raise ValueError(
      f"'{fc}' has shape {(embedding_size, fc_in)}: its {fc_in} inputs are not a square map of "
      f"the last stage's {widths[-1] if widths else '?'} channels"
    )
  return FRConfig.for_family(
    family,
    layers=tuple(layers),
    widths=tuple(widths),
    stem_width=stem,
    embedding_size=embedding_size,
    image_size=grid * 2 ** len(layers),
  )
