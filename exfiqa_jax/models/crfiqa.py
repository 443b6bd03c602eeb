"""CR-FIQA (fdbtrs/CR-FIQA `backbones/iresnet.py`) in Flax NNX: the insightface iResNet
whose forward returns `(embedding, qs)`, `qs = Linear(embedding_size -> 1)` on the
embedding (after the `features` BatchNorm). Names are PyTorch's: the backbone's as in
`models.iresnet`, the head `qs` (`qs.weight` [1, D], `qs.bias` [1]).
"""

from __future__ import annotations

import jax
from flax import nnx

from exfiqa_jax.models.fr_config import CRFIQAConfig
from exfiqa_jax.models.iresnet import IResNet
from exfiqa_jax.models.layers import F32, Dense


class CRFIQA(IResNet):
  """images: float32 [B, S, S, 3], BGR in [-1, 1] as CR-FIQA's evaluation feeds them ->
  (embedding [B, D] before L2 normalisation, quality [B]: CR-FIQA's `qs`, higher = better)."""

  def __init__(self, config: CRFIQAConfig, *, rngs: nnx.Rngs):
    super().__init__(config, rngs=rngs)
    self.qs = Dense(config.embedding_size, 1, rngs=rngs)

  def __call__(self, images: jax.Array, dtype=F32, *args, **kwargs) -> tuple[jax.Array, jax.Array]:
    embedding = super().__call__(images, dtype, *args, **kwargs)
    return embedding, self.qs(embedding, dtype)[:, 0].astype(F32)
