"""The wrappers each face-recognition release saves its backbone in, both ways.

- arcface, elasticface, curricularface: a plain state_dict (`backbone.pth`,
  `*backbone.pth`, `CurricularFace_Backbone.pth`), keys possibly prefixed
  `module.` by DataParallel (`exfiqa_jax.convert.wrappers.unwrap`).
- magface: a training checkpoint `{"epoch", "arch", "state_dict",
  "optimizer"}` whose `state_dict` holds the backbone under
  `features.module.` with the classifier `parallel_fc.weight` [classes, 512]
  (distributed training), or under `module.features.` with `module.fc.weight`.
  The classifier and the training entries are ignored by name; a bare
  state_dict (either prefix, or none) is accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exfiqa_jax.convert.wrappers import StateDict, unwrap
from exfiqa_jax.models.fr_config import FRConfig

MAGFACE_ENTRIES = ("epoch", "arch", "optimizer")  # training state beside `state_dict`
MAGFACE_LAYOUTS = {  # backbone prefix -> classifier head key
  "features.module.": "parallel_fc.weight",
  "module.features.": "module.fc.weight",
}


def _magface(obj: Any) -> StateDict:
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
    return unwrap(obj)
  head = MAGFACE_LAYOUTS[prefix]
  outside = sorted(k for k in obj if not k.startswith(prefix) and k != head)
  if outside:
    raise ValueError(
      f"unexpected key '{outside[0]}' beside the backbone ('{prefix}*') and the classifier "
      f"('{head}')"
    )
  return unwrap({k.removeprefix(prefix): v for k, v in obj.items() if k != head})


def unwrap_fr(obj: Any, family: str) -> StateDict:
  """A loaded checkpoint of `family` -> the backbone's {key: float32 ndarray}."""
  return _magface(obj) if family == "magface" else unwrap(obj)


def wrap_fr(config: FRConfig, state_dict: dict) -> Any:
  """The release's file layout for a backbone state_dict (MagFace: its training dict,
  without the classifier and optimizer, which no embedding depends on)."""
  if config.family != "magface":
    return state_dict
  return {
    "arch": config.name,
    "state_dict": {f"features.module.{k}": v for k, v in state_dict.items()},
  }
