"""From a loaded checkpoint object to a float32 state_dict of numpy arrays, and back to
the file layout a release saves.

Wrappers met in practice: a plain state_dict, keys prefixed `module.`
(DataParallel), a training checkpoint holding the backbone under
`state_dict_backbone`, and half-precision tensors (converted to float32):
`state_dict`, which every family uses. MagFace saves a training checkpoint
`{"epoch", "arch", "state_dict", "optimizer"}` whose `state_dict` holds the
backbone under `features.module.` with the classifier `parallel_fc.weight`
[classes, 512] (distributed training), or under `module.features.` with
`module.fc.weight`; the classifier and the training entries are ignored by
name, and a bare state_dict (either prefix, or none) is accepted too
(`unwrap_magface`, `wrap_magface`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

StateDict = dict[str, np.ndarray]

MAGFACE_ENTRIES = ("epoch", "arch", "optimizer")  # training state beside `state_dict`
MAGFACE_LAYOUTS = {  # backbone prefix -> classifier head key
  "features.module.": "parallel_fc.weight",
  "module.features.": "module.fc.weight",
}


def _array(value: Any) -> np.ndarray:
  if isinstance(value, torch.Tensor):
    value = value.detach().cpu()
    return (value.float() if value.is_floating_point() else value).numpy()
  a = np.asarray(value)
  return a.astype(np.float32, copy=False) if np.issubdtype(a.dtype, np.floating) else a


def state_dict(obj: Any) -> StateDict:
  """Any supported wrapper -> {key: ndarray}, floating arrays as float32."""
  if isinstance(obj, Mapping) and "state_dict_backbone" in obj:
    obj = obj["state_dict_backbone"]
  if not isinstance(obj, Mapping):
    raise ValueError(f"holds a {type(obj).__name__}, not a state_dict")
  bad = [k for k, v in obj.items() if not isinstance(v, (torch.Tensor, np.ndarray))]
  if bad:
    raise ValueError(
      f"holds a dict whose entries {bad[:6]} are not tensors; a state_dict, or a "
      "training checkpoint with the backbone under 'state_dict_backbone', expected"
    )
  return {k.removeprefix("module."): _array(v) for k, v in obj.items()}


def unwrap_magface(obj: Any) -> StateDict:
  """A MagFace training checkpoint (or its bare backbone state_dict) -> the backbone's."""
  if isinstance(obj, Mapping) and "state_dict" in obj:
    extra = sorted(set(obj) - {"state_dict", *MAGFACE_ENTRIES})
    if extra:
      raise ValueError(
        f"a MagFace checkpoint holds 'state_dict' and {list(MAGFACE_ENTRIES)}; found also {extra}"
      )
    obj = obj["state_dict"]
  if not isinstance(obj, Mapping):
    raise ValueError(f"holds a {type(obj).__name__}, not a MagFace checkpoint")
  prefix = next((p for p in MAGFACE_LAYOUTS if any(str(k).startswith(p) for k in obj)), None)
  if prefix is None:  # a backbone state_dict saved on its own
    return state_dict(obj)
  head = MAGFACE_LAYOUTS[prefix]
  outside = sorted(k for k in obj if not k.startswith(prefix) and k != head)
  if outside:
    raise ValueError(
      f"unexpected key '{outside[0]}' beside the backbone ('{prefix}*') and the classifier "
      f"('{head}')"
    )
  return state_dict({k.removeprefix(prefix): v for k, v in obj.items() if k != head})


def plain(config: Any, sd: dict) -> dict:
  """The file layout of a release that saves its backbone's state_dict as it is."""
  return sd


def wrap_magface(config: Any, sd: dict) -> dict:
  """MagFace's training dict, without the classifier and optimizer (no embedding
  depends on them)."""
  return {"arch": config.name, "state_dict": {f"features.module.{k}": v for k, v in sd.items()}}
