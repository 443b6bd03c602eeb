"""Integer layouts the compiled metrics and their numpy twins share, without JAX: the
numpy-only modules (`metrics.host`, `fusion.sides`) import these, so the CPU sweep's
worker processes (`exfiqa_jax.fusion.workers`) never import JAX."""

from __future__ import annotations

RATES = 20  # ERC discard rates i / 20, i = 0..19; the last is 0.95, no point at 1


def index_bits(pairs: int) -> int:
  """Bits of the pair index in a key: pair indices 0..pairs-1."""
  return max(1, (pairs - 1).bit_length())
