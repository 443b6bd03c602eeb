"""Is a state_dict a ViT-FIQA backbone, and which `ViTConfig` do its shapes give."""

from __future__ import annotations

import re

from exfiqa_jax.convert.wrappers import StateDict
from exfiqa_jax.models.config import ViTConfig


def check_architecture(sd: StateDict) -> None:
  """Refuses state_dicts that are not a ViT-FIQA ("token" mode) backbone, saying what they are."""
  keys = set(sd)
  # The quality token or head and the blocks say ViT-FIQA; a key missing among
  # them is then named by the key check, not taken for another architecture.
  if ("qs_token" in keys or "head_qs.1.weight" in keys) and any(
    k.startswith("blocks.") for k in keys
  ):
    return
  found = []
  if "cls_token" in keys:
    found.append("a class token 'cls_token' (ViT-FIQA has a quality token 'qs_token')")
  for head in ("head.weight", "fc.weight", "classifier.weight", "weight", "kernel"):
    if head in keys and sd[head].ndim == 2:
      found.append(f"a classifier '{head}' of shape {tuple(sd[head].shape)}")
  if any(re.match(r"(conv1|bn1|layer\d+)\.", k) for k in keys):
    found.append("convolutional layers 'conv1', 'layer1', ... (a ResNet-style network)")
  tops = sorted({k.split(".")[0] for k in keys})
  found.append(f"top-level entries {tops[:12]}{' ...' if len(tops) > 12 else ''}")
  raise ValueError(
    "not a ViT-FIQA backbone (token mode: 'qs_token', 'blocks.N.attn.qkv', "
    f"'head_qs'); found {'; '.join(found)}"
  )


def _shape(sd: StateDict, key: str, purpose: str) -> tuple[int, ...]:
  if key not in sd:
    raise ValueError(f"missing key '{key}', needed to infer the {purpose}")
  return tuple(sd[key].shape)


def default_image_size(grid: int, patch: int) -> int:
  """The smallest multiple of 8 giving `grid` patches (112 for grid 12, patch 9), else grid*patch.

  Every size in [grid*patch, grid*patch + patch - 1] gives the same model: the
  remainder pixels are never seen, so the checkpoint cannot tell them apart.
  """
  size = -(-grid * patch // 8) * 8
  return size if size < (grid + 1) * patch else grid * patch


RELEASED_HEADS = 8  # the released model's (configs/vit_s.py); never assumed, only named


def infer_vit(
  sd: StateDict, num_heads: int | None = None, image_size: int | None = None
) -> ViTConfig:
  """Width, depth, patches, MLP width and patch size from the shapes; heads as given
  (the shapes cannot tell them: None is refused), after `check_architecture`."""
  check_architecture(sd)
  if num_heads is None:
    raise ValueError(
      "the attention head count cannot be read from the weights; pass num_heads "
      f"({RELEASED_HEADS} for the released ViT-FIQA model)"
    )
  _, tokens, width = _shape(sd, "pos_embed", "width and number of patches")
  patch = _shape(sd, "patch_embed.proj.weight", "patch size")[-1]
  mlp_dim = _shape(sd, "blocks.0.mlp.fc1.weight", "MLP width")[0]
  depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
  grid = round((tokens - 1) ** 0.5)
  if grid * grid != tokens - 1:
    raise ValueError(
      f"'pos_embed' has shape {(1, tokens, width)}: {tokens - 1} patches do not form a square grid"
    )
  size = default_image_size(grid, patch) if image_size is None else image_size
  if size // patch != grid:
    raise ValueError(
      f"image size {size} gives a {size // patch}x{size // patch} grid of "
      f"{patch}-pixel patches, but 'pos_embed' holds a {grid}x{grid} grid"
    )
  if num_heads < 1 or width % num_heads:
    raise ValueError(
      f"--num-heads {num_heads} does not divide the width {width} read from 'pos_embed'"
    )
  return ViTConfig(
    image_size=size,
    patch_size=patch,
    width=width,
    depth=depth,
    num_heads=num_heads,
    mlp_dim=mlp_dim,
  )
