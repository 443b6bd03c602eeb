"""Independent PyTorch (torch.autograd) reference of GraFIQs on the FR references.

Written from jankolf/GraFIQs `backbones/bn.py` (`BN_Model`: forward hooks on every
`nn.BatchNorm2d` record the input's mean and biased variance over [0, 2, 3]; the
score is the sum over them of MSE(mean, running_mean) + MSE(var, running_var),
divided by their count) and `extract_grafiqs.py` (one image at a time;
`autograd.grad` of the score w.r.t. the image and the four stage outputs; quality
= sum of the absolute gradient). Not from the Flax code. Returns the upstream
(positive) sums; the Flax side negates them.
"""

from __future__ import annotations

import numpy as np

VARIANTS = ("image", "block1", "block2", "block3", "block4")


class BNModel:
  """The `BN_Model` logic: hooks on the BatchNorm2d layers of `model` (eval mode)."""

  def __init__(self, model):
    from torch import nn

    self.model = model.eval()
    self.means, self.vars, self.running = [], [], []
    self.handles = [
      m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    ]

  def remove(self) -> None:
    """Removes the hooks (a model used again must not run the hooks of an old BNModel)."""
    for h in self.handles:
      h.remove()
    self.handles = []

  def _hook(self, module, inputs, output):
    x = inputs[0]
    self.means.append(x.mean([0, 2, 3]))
    self.vars.append(x.var([0, 2, 3], unbiased=False))
    self.running.append((module.running_mean, module.running_var))

  def score(self, x):
    """x: [1, 3, S, S] -> (score [1], stage outputs)."""
    import torch

    self.means.clear()
    self.vars.clear()
    self.running.clear()
    blocks = _forward_with_stages(self.model, x)
    mse = torch.nn.MSELoss()
    loss = torch.zeros(1)
    for mean, var, (rm, rv) in zip(self.means, self.vars, self.running, strict=True):
      loss = loss + mse(mean, rm) + mse(var, rv)
    return loss / len(self.means), blocks


def _forward_with_stages(model, x):
  """Runs the whole model (every BatchNorm2d hook fires); returns the stage outputs."""
  import torch

  outs = []
  if hasattr(model, "layer1"):  # iResNet, as GraFIQs' return_intermediate forward
    y = model.prelu(model.bn1(model.conv1(x)))
    for s in range(model.num_stages):
      y = getattr(model, f"layer{s + 1}")(y)
      outs.append(y)
    model.features(model.fc(torch.flatten(model.bn2(y), 1)))
    return outs
  y = model.input_layer(x)  # IR: a stage ends before the next stride-2 block
  blocks = list(model.body)
  for i, block in enumerate(blocks):
    y = block(y)
    if i + 1 == len(blocks) or blocks[i + 1].res_layer[3].stride[0] == 2:
      outs.append(y)
  model.output_layer(y)
  return outs


def grafiqs_reference(
  model, x: np.ndarray, variants=VARIANTS, bn_model: BNModel | None = None
) -> dict[str, np.ndarray]:
  """x: float32 [B, S, S, 3] network input -> {variant: sum |grad|, float64 [B]}.
  bn_model: a `BNModel` of `model` to reuse (its hooks stay); default: one made for this
  call, its hooks removed at the end."""
  import torch

  bnm = bn_model or BNModel(model)
  out = {v: np.empty(len(x)) for v in variants}
  try:
    for i in range(len(x)):
      image = torch.from_numpy(x[i : i + 1]).permute(0, 3, 1, 2).contiguous()
      image.requires_grad_(True)
      score, blocks = bnm.score(image)
      grads = torch.autograd.grad(score, [image, *blocks])
      names = ("image", *(f"block{s + 1}" for s in range(len(blocks))))
      named = dict(zip(names, grads, strict=True))
      for v in variants:
        out[v][i] = float(named[v].abs().double().sum())
  finally:
    if bn_model is None:
      bnm.remove()
  return out
