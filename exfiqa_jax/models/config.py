"""The ViT-FIQA model configuration (`get_config()` files: `exfiqa_jax.configs`)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from exfiqa_jax.models import bounds as B


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  """ViT-FIQA ("token" mode) hyper-parameters; defaults are the released ViT-S."""

  kind: ClassVar[str] = "vit_fiqa"  # its entry in `models.registry.KINDS`
  family: ClassVar[str] = "vit_fiqa"  # its entry in `exfiqa_jax.convert.FAMILIES`
  image_size: int = 112
  patch_size: int = 9
  width: int = 512
  depth: int = 12
  num_heads: int = 8
  mlp_dim: int = 2048

  def __post_init__(self):
    """Checks the sizes against `models.bounds` before anything is built."""
    for name, hi in (
      ("image_size", B.MAX_IMAGE_SIZE),
      ("patch_size", B.MAX_IMAGE_SIZE),
      ("width", B.MAX_WIDTH),
      ("depth", B.MAX_BLOCKS),
      ("num_heads", B.MAX_WIDTH),
      ("mlp_dim", B.MAX_MLP_DIM),
    ):
      object.__setattr__(self, name, B.check_int(name, getattr(self, name), 1, hi))
    if self.width % self.num_heads:
      raise ValueError(f"num_heads={self.num_heads} does not divide width={self.width}")
    if self.patch_size > self.image_size:
      raise ValueError(f"patch_size={self.patch_size} exceeds image_size={self.image_size}")
    if self.num_patches > B.MAX_TOKENS:
      raise ValueError(
        f"image_size {self.image_size} / patch_size {self.patch_size}: {self.num_patches} "
        f"patches, over the {B.MAX_TOKENS} this exfiqa builds"
      )
    per_block = 4 * self.width**2 + 2 * self.width * self.mlp_dim
    B.check_params("the ViT", self.depth * per_block + 3 * self.patch_size**2 * self.width)

  @property
  def grid(self) -> int:
    """Patches per side; pixels past grid * patch_size are never seen."""
    return self.image_size // self.patch_size

  @property
  def num_patches(self) -> int:
    return self.grid**2

  def to_dict(self) -> dict[str, int]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "ViTConfig":
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise KeyError(f"unknown model config keys {sorted(unknown)}")
    return cls(**d)  # each size checked by bounds.check_int (no bool, no 12.7 -> 12)
