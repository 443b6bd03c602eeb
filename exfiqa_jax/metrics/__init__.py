"""ERC and EDC of per-image quality keys (docs/protocol.md §3-5): the pair set
(`pairset`), the ERC and EDC programs (`erc.erc`, `edc.edc`), their evaluation in one
program (`evaluate`), their numpy twins for many variants (`host`, `host_curves`) and
plain references (`reference`).

Pair quality is the minimum of the two images' quality scores. Pairs of equal
quality are ordered by their position in the pair list (a stable sort), so
results never depend on the machine. Qualities enter as exact integers
(`evaluate_keys`) or as float32 scores (`evaluate_quality`, order-preserving keys).

The names below are loaded at their first use (PEP 562): importing a numpy-only
module of this package (`host`, `bits`) imports no JAX, which the CPU sweep's worker
processes rely on (`exfiqa_jax.fusion.workers`).
"""

from __future__ import annotations

import importlib

# name -> the module of this package that defines it
_HOME = {
  "PairSet": "pairset",
  "bucket": "pairset",
  "make_pairset": "pairset",
  "Edc": "edc",
  "RATES": "bits",
  "Metrics": "evaluate",
  "evaluate_keys": "evaluate",
  "evaluate_quality": "evaluate",
  "default_top": "evaluate",
  "class_keys": "evaluate",
  "prepare_keys": "evaluate",
  "metrics_of_sorted": "evaluate",
}

__all__ = [
  "PairSet",
  "bucket",
  "make_pairset",
  "Metrics",
  "evaluate_keys",
  "evaluate_quality",
  "Edc",
  "RATES",
  "default_top",
  "class_keys",
  "prepare_keys",
  "metrics_of_sorted",
]


def __getattr__(name: str):
  home = _HOME.get(name)
  if home is None:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
  globals()[name] = value  # found directly from now on
  return value


def __dir__() -> list[str]:
  return sorted({*globals(), *_HOME})
