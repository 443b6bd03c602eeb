"""An independent PyTorch implementation of ViT-FIQA (docs/protocol.md §7).

Written from docs/protocol.md, not from the Flax code; the tests and `convert --verify`
compare the Flax model against it. Its `state_dict` keys and shapes
follow docs/protocol.md §9, so checkpoints written from it look like released ones.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class Attention(nn.Module):
  def __init__(self, dim: int, num_heads: int):
    super().__init__()
    self.num_heads = num_heads
    self.qkv = nn.Linear(dim, 3 * dim, bias=False)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x):
    q, k, v = rearrange(self.qkv(x), "b n (t h c) -> t b h n c", t=3, h=self.num_heads)
    attn = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # [B, H, N, N]
    attn = attn.softmax(dim=-1)
    return self.proj(rearrange(attn @ v, "b h n c -> b n (h c)"))


class Mlp(nn.Module):
  def __init__(self, dim: int, hidden: int):
    super().__init__()
    self.fc1 = nn.Linear(dim, hidden)
    self.act = nn.ReLU6()
    self.fc2 = nn.Linear(hidden, dim)

  def forward(self, x):
    return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
  def __init__(self, dim: int, num_heads: int, hidden: int):
    super().__init__()
    self.norm1 = nn.LayerNorm(dim, eps=1e-5)
    self.attn = Attention(dim, num_heads)
    self.norm2 = nn.LayerNorm(dim, eps=1e-5)
    self.mlp = Mlp(dim, hidden)

  def forward(self, x):
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
  def __init__(self, patch: int, dim: int):
    super().__init__()
    self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

  def forward(self, x):  # [B, 3, H, W] -> [B, N, D], N row-major over the patch grid
    return rearrange(self.proj(x), "b d gh gw -> b (gh gw) d")


class ViTFIQAReference(nn.Module):
  """forward(x: [B, 3, H, W] in [-1, 1]) -> (embedding [B, D], exits [B, L])."""

  def __init__(
    self,
    image_size=112,
    patch_size=9,
    width=512,
    depth=12,
    num_heads=8,
    mlp_dim=2048,
    with_mask_token=True,
  ):
    super().__init__()
    n = (image_size // patch_size) ** 2
    self.patch_embed = PatchEmbed(patch_size, width)
    self.qs_token = nn.Parameter(torch.zeros(1, 1, width))
    self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, width))
    if with_mask_token:
      self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
    self.blocks = nn.ModuleList(Block(width, num_heads, mlp_dim) for _ in range(depth))
    self.norm = nn.LayerNorm(width, eps=1e-5)
    self.feature = nn.Sequential(
      nn.Linear(n * width, width, bias=False),
      nn.BatchNorm1d(width, eps=2e-5),
      nn.Linear(width, width, bias=False),
      nn.BatchNorm1d(width, eps=2e-5),
    )
    self.head_qs = nn.Sequential(nn.BatchNorm1d(width, eps=2e-5), nn.Linear(width, 1, bias=False))

  def forward(self, x):
    x = self.patch_embed(x)
    x = torch.cat([self.qs_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
    exits = []
    for blk in self.blocks:
      x = blk(x)
      exits.append(self.head_qs(self.norm(x)[:, 0]))
    x = self.norm(x)
    emb = self.feature(x[:, 1:].reshape(x.shape[0], -1))
    return emb, torch.cat(exits, dim=1)


def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
  """Gives every parameter and BatchNorm statistic a random value; eval mode."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, t in model.state_dict().items():
      if name.endswith("num_batches_tracked"):
        t.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
      elif name.endswith("running_var"):
        t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.5)
      elif name.endswith((".weight",)) and t.ndim == 1:  # norm scales near one
        t.copy_(1.0 + 0.2 * torch.randn(t.shape, generator=g))
      else:
        fan_in = t[0].numel() if t.ndim > 1 else 1
        t.copy_(torch.randn(t.shape, generator=g) / max(fan_in, 1) ** 0.5)
  return model.eval()
