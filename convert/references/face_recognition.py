"""Independent PyTorch implementations of the face-recognition backbones.

Written from the structure of the released model files (insightface
`arcface_torch/backbones/iresnet.py`, ElasticFace and MagFace
`iresnet.py`, CurricularFace `backbone/model_irse.py`), not from the Flax
code: NCHW, PyTorch's own layers and defaults. Their `state_dict` keys and
shapes are the releases', so checkpoints written from them look like
released ones; the tests and `convert --verify` compare the Flax models
against them.
"""

from __future__ import annotations

import torch
from torch import nn


class IBasicBlock(nn.Module):
  def __init__(self, inplanes: int, planes: int, stride: int, eps: float):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(inplanes, eps=eps)
    self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes, eps=eps)
    self.prelu = nn.PReLU(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes, eps=eps)
    self.downsample = None
    if stride != 1 or inplanes != planes:
      self.downsample = nn.Sequential(
        nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes, eps=eps)
      )

  def forward(self, x):
    out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
    return out + (x if self.downsample is None else self.downsample(x))


class IResNetReference(nn.Module):
  """forward(x: [B, 3, S, S]) -> embedding [B, D]; the iResNet of arcface_torch/MagFace."""

  def __init__(
    self,
    layers=(3, 13, 30, 3),
    widths=(64, 128, 256, 512),
    stem_width=64,
    embedding_size=512,
    image_size=112,
    bn_eps=1e-5,
  ):
    super().__init__()
    self.conv1 = nn.Conv2d(3, stem_width, 3, 1, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(stem_width, eps=bn_eps)
    self.prelu = nn.PReLU(stem_width)
    inplanes = stem_width
    for s, (n, planes) in enumerate(zip(layers, widths, strict=True)):
      blocks = [IBasicBlock(inplanes, planes, 2, bn_eps)]
      blocks += [IBasicBlock(planes, planes, 1, bn_eps) for _ in range(n - 1)]
      setattr(self, f"layer{s + 1}", nn.Sequential(*blocks))
      inplanes = planes
    self.num_stages = len(layers)
    grid = image_size // 2 ** len(layers)
    self.bn2 = nn.BatchNorm2d(inplanes, eps=bn_eps)
    self.dropout = nn.Dropout(p=0.0)
    self.fc = nn.Linear(inplanes * grid * grid, embedding_size)
    self.features = nn.BatchNorm1d(embedding_size, eps=bn_eps)

  def forward(self, x):
    x = self.prelu(self.bn1(self.conv1(x)))
    for s in range(self.num_stages):
      x = getattr(self, f"layer{s + 1}")(x)
    x = torch.flatten(self.bn2(x), 1)  # NCHW order (c, h, w)
    return self.features(self.fc(self.dropout(x)))


class Flatten(nn.Module):
  def forward(self, x):
    return x.reshape(x.shape[0], -1)


class BottleneckIR(nn.Module):
  def __init__(self, in_channel: int, depth: int, stride: int):
    super().__init__()
    if in_channel == depth:
      self.shortcut_layer = nn.MaxPool2d(1, stride)
    else:
      self.shortcut_layer = nn.Sequential(
        nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False), nn.BatchNorm2d(depth)
      )
    self.res_layer = nn.Sequential(
      nn.BatchNorm2d(in_channel),
      nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
      nn.PReLU(depth),
      nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
      nn.BatchNorm2d(depth),
    )

  def forward(self, x):
    return self.res_layer(x) + self.shortcut_layer(x)


class IRBackboneReference(nn.Module):
  """forward(x: [B, 3, S, S]) -> (embedding [B, D], conv features [B, C*g*g]), as released."""

  def __init__(
    self,
    layers=(3, 13, 30, 3),
    widths=(64, 128, 256, 512),
    stem_width=64,
    embedding_size=512,
    image_size=112,
    bn_eps=1e-5,
  ):
    super().__init__()
    if bn_eps != 1e-5:
      raise ValueError("model_irse.py uses PyTorch's default BatchNorm eps, 1e-5")
    self.input_layer = nn.Sequential(
      nn.Conv2d(3, stem_width, (3, 3), 1, 1, bias=False),
      nn.BatchNorm2d(stem_width),
      nn.PReLU(stem_width),
    )
    modules, in_channel = [], stem_width
    for n, depth in zip(layers, widths, strict=True):
      modules.append(BottleneckIR(in_channel, depth, 2))
      modules += [BottleneckIR(depth, depth, 1) for _ in range(n - 1)]
      in_channel = depth
    self.body = nn.Sequential(*modules)
    grid = image_size // 2 ** len(layers)
    self.output_layer = nn.Sequential(
      nn.BatchNorm2d(in_channel),
      nn.Dropout(0.4),
      Flatten(),
      nn.Linear(in_channel * grid * grid, embedding_size),
      nn.BatchNorm1d(embedding_size, affine=False),
    )

  def forward(self, x):
    x = self.body(self.input_layer(x))
    return self.output_layer(x), x.reshape(x.shape[0], -1)


ARCHS = {"iresnet": IResNetReference, "irse": IRBackboneReference}


def reference_for(config) -> nn.Module:
  """The reference model of an `FRConfig` (eval mode, fresh weights)."""
  return ARCHS[config.arch](
    layers=config.layers,
    widths=config.widths,
    stem_width=config.stem_width,
    embedding_size=config.embedding_size,
    image_size=config.image_size,
    bn_eps=config.bn_eps,
  ).eval()


def embedding(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
  """The embedding of either reference ([B, 3, S, S] -> [B, D])."""
  out = model(x)
  return out[0] if isinstance(out, tuple) else out


def randomize_fr_(model: nn.Module, seed: int = 0) -> nn.Module:
  """Every weight, bias, BatchNorm statistic and PReLU slope random; eval mode.

  Scales keep activations of order one through a few blocks: conv and linear
  weights ~ N(0, 1/fan_in), BatchNorm scales near 1 and variances in [0.5, 2],
  PReLU slopes in [-0.25, 0.75] (both signs, so the slope matters).
  """
  g = torch.Generator().manual_seed(seed)

  def rand(shape):
    return torch.rand(shape, generator=g)

  def randn(shape):
    return torch.randn(shape, generator=g)

  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (nn.Conv2d, nn.Linear)):
        m.weight.copy_(randn(m.weight.shape) / m.weight[0].numel() ** 0.5)
        if m.bias is not None:
          m.bias.copy_(0.1 * randn(m.bias.shape))
      elif isinstance(m, nn.PReLU):
        m.weight.copy_(rand(m.weight.shape) - 0.25)
      elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        m.running_mean.copy_(0.2 * randn(m.running_mean.shape))
        m.running_var.copy_(0.5 + 1.5 * rand(m.running_var.shape))
        m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
        if m.affine:
          m.weight.copy_(1.0 + 0.2 * randn(m.weight.shape))
          m.bias.copy_(0.1 * randn(m.bias.shape))
  return model.eval()
