"""An independent PyTorch implementation of CR-FIQA's network.

Written from the structure of fdbtrs/CR-FIQA `backbones/iresnet.py` (class `IResNet`
with `qs=1`, `use_se=False`), not from the Flax code: the insightface iResNet of
`face_recognition.IResNetReference` (NCHW, PyTorch's layers) with the quality head
`self.qs = nn.Linear(num_features, 1)` applied to the output of `features`;
`forward` returns `(embedding, qs)` as the release's does. Its `state_dict` keys and
shapes are the released `<id>backbone.pth` ones.
"""

from __future__ import annotations

import torch
from torch import nn

from exfiqa_jax.convert.references.face_recognition import IResNetReference


class CRFIQAReference(IResNetReference):
  """forward(x: [B, 3, S, S]) -> (embedding [B, D], qs [B, 1])."""

  def __init__(self, **sizes):
    super().__init__(**sizes)
    self.qs = nn.Linear(self.features.num_features, 1)

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    embedding = super().forward(x)
    return embedding, self.qs(embedding)


def reference_for(config) -> CRFIQAReference:
  """The reference model of a `CRFIQAConfig` (eval mode, fresh weights)."""
  return CRFIQAReference(
    layers=config.layers,
    widths=config.widths,
    stem_width=config.stem_width,
    embedding_size=config.embedding_size,
    image_size=config.image_size,
    bn_eps=config.bn_eps,
  ).eval()


def outputs(model: nn.Module, x: torch.Tensor) -> dict:
  """{"embedding": [B, D], "quality": [B]} as numpy, for `verify` and the tests."""
  embedding, qs = model(x)
  return {"embedding": embedding.numpy(), "quality": qs[:, 0].numpy()}
