"""Exact import of model checkpoints into exfiqa-jax, and back: ViT-FIQA (docs/protocol.md
§9) and the face-recognition backbones (ArcFace, ElasticFace, MagFace, CurricularFace),
each one record of `FAMILIES`.

    from exfiqa_jax.convert import from_torch, to_torch, convert_file
    config, params, batch_stats = from_torch(state_dict, num_heads=8)
    config, params, batch_stats = from_torch(load_torch(path), family="magface")

`python -m exfiqa_jax.convert SRC DST` is `exfiqa convert SRC DST`.

The names below are imported on first use (PEP 562): the converter needs torch (the
`convert` extra), and a submodule that does not (e.g. `convert.demo` without torch, or
`convert.mxnet_params`) must not pull it in through this package.
"""

from __future__ import annotations

import importlib

_WHERE = {
  "from_torch": "exfiqa_jax.convert.core",
  "infer_config": "exfiqa_jax.convert.core",
  "to_torch": "exfiqa_jax.convert.core",
  "unwrap": "exfiqa_jax.convert.core",
  "FAMILIES": "exfiqa_jax.convert.families",
  "Family": "exfiqa_jax.convert.families",
  "convert_file": "exfiqa_jax.convert.files",
  "export_file": "exfiqa_jax.convert.files",
  "default_image_size": "exfiqa_jax.convert.infer",
  "load_torch": "exfiqa_jax.convert.safe_load",
}

__all__ = list(_WHERE)


def __getattr__(name: str):
  if name not in _WHERE:
    raise AttributeError(f"module 'exfiqa_jax.convert' has no attribute {name!r}")
  value = getattr(importlib.import_module(_WHERE[name]), name)
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted([*globals(), *__all__])
