"""The ViT-FIQA model configuration (`get_config()` files: `exfiqa_jax.configs`)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


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
    if self.width % self.num_heads:
      raise ValueError(f"num_heads={self.num_heads} does not divide width={self.width}")
    if self.patch_size > self.image_size:
      raise ValueError(f"patch_size={self.patch_size} exceeds image_size={self.image_size}")

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
    return cls(**{k: int(v) for k, v in d.items()})
