"""The stated bounds of an architecture, checked before any model is built.

A config (`ViTConfig`, `FRConfig`) checks its sizes here when it is made, from
a checkpoint's JSON, an export's settings or the shapes of a converted file, so
that a few edited bytes cannot make a build run for minutes or divide by zero:
every count and width is a positive integer within the bound stated below, and
the whole network within MAX_PARAMS weights. The bounds are far above every
released model (iresnet200: 98 blocks, 512 wide, 3.3e7 weights in its widest
stage; ViT-S: 12 blocks of 512).
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_IMAGE_SIZE = 1024  # pixels a side
MAX_WIDTH = 8192  # channels of a stage, a ViT's token width, an embedding
MAX_MLP_DIM = 32768
MAX_STAGES = 8  # FR stages (each halves the map)
MAX_BLOCKS = 128  # FR blocks over all stages (building 98 takes ~17 s, 200 ~110 s); ViT blocks
MAX_TOKENS = 4096  # ViT patches
MAX_PARAMS = 1 << 30  # weights of the whole network (4 GiB as float32)


def check_int(name: str, value, lo: int, hi: int) -> int:
  """`value` as an int in [lo, hi], else a one-line ValueError naming `name` (a bool,
  e.g. JSON `true`, is not an integer here, nor is 12.5; 12.0 is 12)."""
  if isinstance(value, bool):
    raise ValueError(f"{name} {value!r} is not an integer")
  if not isinstance(value, int):
    try:
      as_int = int(value)
    except (TypeError, ValueError, OverflowError):
      raise ValueError(f"{name} {value!r} is not an integer") from None
    if as_int != value:
      raise ValueError(f"{name} {value!r} is not an integer")
    value = as_int
  if not lo <= value <= hi:
    raise ValueError(f"{name} {value} is outside the bounds {lo} to {hi} of this exfiqa")
  return value


def check_ints(name: str, values: Sequence, lo: int, hi: int, count: tuple[int, int]) -> tuple:
  """`values` as a tuple of `count[0]` to `count[1]` ints, each in [lo, hi]."""
  if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
    raise ValueError(f"{name} {values!r} is not a list of integers")
  if not count[0] <= len(values) <= count[1]:
    raise ValueError(f"{name} has {len(values)} entries; {count[0]} to {count[1]} are allowed")
  return tuple(check_int(f"{name}[{i}]", v, lo, hi) for i, v in enumerate(values))


def check_params(what: str, params: int) -> None:
  """Refuses a network of more than MAX_PARAMS weights (`params`, counted from its config)."""
  if params > MAX_PARAMS:
    raise ValueError(f"{what}: {params:,} weights, over the {MAX_PARAMS:,} this exfiqa builds")
