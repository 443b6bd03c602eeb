"""Independent PyTorch reference of SER-FIQ's stochastic head, given explicit masks.

Written from pterhoer/FaceImageQuality `face_image_quality.py` (`SERFIQ` and
`get_embedding_quality`) on the PyTorch FR references of `face_recognition.py`,
not from the Flax code: the flattened last feature map (NCHW order), T passes of
inverted dropout + Linear + embedding BatchNorm1d + L2 normalisation, then
2 / (1 + exp(mean of the Euclidean distances over the strict upper triangle)).
Distances are taken as explicit differences in float64.
"""

from __future__ import annotations

import numpy as np


def feature_map(model, x):
  """The last feature map (after the final BatchNorm2d): [B, 3, S, S] -> [B, C, g, g],
  and the (fc, embedding BatchNorm) that follow its flatten."""
  if hasattr(model, "layer1"):  # iResNet
    y = model.prelu(model.bn1(model.conv1(x)))
    for s in range(model.num_stages):
      y = getattr(model, f"layer{s + 1}")(y)
    return model.bn2(y), model.fc, model.features
  y = model.body(model.input_layer(x))  # IR
  out = model.output_layer
  return out[0](y), out[3], out[4]


def serfiq_reference(model, x: np.ndarray, masks: np.ndarray, p: float, head_bn: bool = True):
  """x: float32 [B, S, S, 3] network input; masks: [T, B, F] keep-masks with F in the
  Flax (h, w, c) order -> qualities float64 [B]."""
  import torch

  t, b, _ = masks.shape
  with torch.no_grad():
    fmap, fc, bn = feature_map(model, torch.from_numpy(x).permute(0, 3, 1, 2))
    _, c, g, _ = fmap.shape
    feats = torch.flatten(fmap, 1)  # (c, h, w) order
    # (h, w, c) -> (c, h, w), the order of PyTorch's flatten
    m = torch.from_numpy(np.asarray(masks, np.float32)).reshape(t, b, g, g, c)
    m = m.permute(0, 1, 4, 2, 3).reshape(t, b, -1)
    out = np.empty(b)
    for i in range(b):
      h = fc(feats[i][None] * m[:, i] / (1.0 - p))  # [T, D]
      if head_bn:
        h = bn(h)
      e = torch.nn.functional.normalize(h, dim=1).double()
      d = torch.linalg.vector_norm(e[:, None] - e[None], dim=-1)
      iu = torch.triu_indices(t, t, offset=1)
      out[i] = 2.0 / (1.0 + np.exp(d[iu[0], iu[1]].mean().item()))
  return out


def serfiq_sampled(model, x, passes: int = 100, p: float = 0.5, generator=None):
  """SER-FIQ as the upstream demo runs it, for speed comparisons: x [B, 3, S, S] tensor ->
  qualities [B]; the backbone once on the batch, then per image `passes` head passes in
  one batched matmul with masks drawn by torch (float32 distances, as sklearn's)."""
  import torch

  with torch.no_grad():
    fmap, fc, bn = feature_map(model, x)
    feats = torch.flatten(fmap, 1)
    out = torch.empty(len(feats))
    iu = torch.triu_indices(passes, passes, offset=1)
    for i in range(len(feats)):
      keep = torch.rand(passes, feats.shape[1], generator=generator) >= p
      e = torch.nn.functional.normalize(bn(fc(feats[i][None] * keep / (1.0 - p))), dim=1)
      d = torch.cdist(e, e)[iu[0], iu[1]]
      out[i] = 2.0 / (1.0 + torch.exp(d.mean()))
  return out
