"""`get_config()` files shipped with the package, and the loader for them.

    load_config_file("vit_s")             # configs/vit_s.py, from the package
    load_config_file("my_job.py")         # a file of the user's, by path
    apply_overrides(cfg, ["scoring.batch_size=64"])

A name without `.py` is a config shipped here (`names()` lists them); anything
ending in `.py` is a path. Both run the file's `get_config()`.
"""

from __future__ import annotations

import ast
import importlib.resources
import importlib.util
import os
from typing import Any


def names() -> list[str]:
  """The configs shipped with the package, e.g. ["demo", "lfw", "paper", "vit_s", ...]."""
  files = importlib.resources.files(__name__).iterdir()
  return sorted(f.name[:-3] for f in files if f.name.endswith(".py") and not f.name.startswith("_"))


def config_path(name_or_path: str) -> str:
  """The file a name or path refers to (a shipped config's path inside the package)."""
  if name_or_path.endswith(".py"):
    return name_or_path
  return str(importlib.resources.files(__name__) / f"{name_or_path}.py")


def load_config_file(name_or_path: str) -> Any:
  """Runs `get_config()` of a shipped config (by name) or of a `.py` file (by path)."""
  path = config_path(name_or_path)
  if not os.path.isfile(path):
    if name_or_path.endswith(".py"):
      raise FileNotFoundError(f"config {name_or_path!r}: no such file {os.path.abspath(path)}")
    raise FileNotFoundError(
      f"config {name_or_path!r}: no such file {name_or_path}.py among the shipped configs"
      f" ({', '.join(names())}); a config of your own is a path to a .py file"
    )
  spec = importlib.util.spec_from_file_location(f"_exfiqa_config_{abs(hash(path))}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(
      f"{path}: not a config: it defines no get_config() (a config file is Python with a "
      "get_config() that returns the settings as a dict; see configs/demo.py)"
    )
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
