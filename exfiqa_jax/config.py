"""Model configuration and `get_config()` file loading."""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
from typing import Any

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@dataclasses.dataclass(frozen=True)
class ViTConfig:
  """ViT-FIQA ("token" mode) hyper-parameters; defaults are the released ViT-S."""
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
    return self.grid ** 2

  def to_dict(self) -> dict[str, int]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "ViTConfig":
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise KeyError(f"unknown model config keys {sorted(unknown)}")
    return cls(**{k: int(v) for k, v in d.items()})


def load_config_file(name_or_path: str) -> Any:
  """Runs `get_config()` of `configs/<name>.py` or of a path to a .py file."""
  path = name_or_path
  if not path.endswith(".py"):
    path = os.path.join(CONFIG_DIR, f"{name_or_path}.py")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config {name_or_path!r}: no such file {path}")
  spec = importlib.util.spec_from_file_location(f"_exfiqa_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise AttributeError(f"config file {path} defines no get_config()")
  return module.get_config()


def apply_overrides(cfg: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
  """Applies `a.b=value` overrides (values parsed as Python literals) to a nested dict."""
  for item in overrides:
    key, sep, raw = item.partition("=")
    if not sep:
      raise ValueError(f"override {item!r} is not of the form key=value")
    node, *parts = cfg, *key.split(".")
    for part in parts[:-1]:
      if not isinstance(node.get(part), dict):
        raise KeyError(f"override {item!r}: unknown key {key!r}")
      node = node[part]
    if parts[-1] not in node:
      raise KeyError(f"override {item!r}: unknown key {key!r}")
    try:
      value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
      value = raw  # a bare string such as a path
    node[parts[-1]] = value
  return cfg
