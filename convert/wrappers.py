"""From a loaded checkpoint object to a float32 state_dict of numpy arrays.

Wrappers met in practice: a plain state_dict, keys prefixed `module.`, a
training checkpoint holding the backbone under `state_dict_backbone`, and
half-precision tensors (converted to float32).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

StateDict = dict[str, np.ndarray]


def _array(value: Any) -> np.ndarray:
  if isinstance(value, torch.Tensor):
    value = value.detach().cpu()
    return (value.float() if value.is_floating_point() else value).numpy()
  a = np.asarray(value)
  return a.astype(np.float32, copy=False) if np.issubdtype(a.dtype, np.floating) else a


def unwrap(obj: Any) -> StateDict:
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
