"""exfiqa-jax: early-exit face image quality assessment (EX-FIQA) in JAX/Flax.

The names below are imported on first use (PEP 562), so that importing a part of
the package that needs no JAX (e.g. `exfiqa --help`) does not pay for it.
"""

from __future__ import annotations

import importlib

_WHERE = {
  "normalize": "exfiqa_jax.data.preprocess",
  "preprocess": "exfiqa_jax.data.preprocess",
  "load": "exfiqa_jax.models.checkpoint",
  "save": "exfiqa_jax.models.checkpoint",
  "ViTConfig": "exfiqa_jax.models.config",
  "abstract_variables": "exfiqa_jax.models.inference",
  "apply": "exfiqa_jax.models.inference",
  "create": "exfiqa_jax.models.inference",
  "split": "exfiqa_jax.models.inference",
  "Outputs": "exfiqa_jax.models.vit",
  "ViTFIQA": "exfiqa_jax.models.vit",
}

__all__ = [
  "ViTConfig",
  "ViTFIQA",
  "Outputs",
  "create",
  "split",
  "apply",
  "abstract_variables",
  "normalize",
  "preprocess",
  "load",
  "save",
]


# Subpackages reached as attributes (`exfiqa_jax.convert.from_torch(...)` after
# `import exfiqa_jax`) are imported on first use too.
_SUBPACKAGES = (
  "adaptive",
  "backend",
  "cli",
  "configs",
  "convert",
  "data",
  "evaluation",
  "fileio",
  "fusion",
  "metrics",
  "models",
  "report",
  "scoring",
)


def __getattr__(name: str):
  if name in _SUBPACKAGES:
    value = importlib.import_module(f"exfiqa_jax.{name}")
  elif name in _WHERE:
    value = getattr(importlib.import_module(_WHERE[name]), name)
  else:
    raise AttributeError(f"module 'exfiqa_jax' has no attribute {name!r}")
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted([*globals(), *__all__])
