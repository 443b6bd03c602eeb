"""Weights-only loading of PyTorch checkpoints: code in a pickle is never run.

`torch.load(weights_only=True)` admits tensors, plain containers and numbers
only. A file that needs any other global (a function or class: the way a
pickle runs code) is refused with that global named; a truncated or corrupt
file is a ValueError too, never a crash deep inside the reader.
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import torch


def load_torch(path: str) -> Any:
  """The unpickled object of a `torch.save` file, loaded weights-only onto the CPU."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such file")
  try:
    with warnings.catch_warnings():  # what is wrong is said in the one-line error below
      warnings.simplefilter("ignore", UserWarning)
      return torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # the reader raises many types for damaged files
    message = str(e)
    if "TorchScript archive" in message:
      raise ValueError(
        f"{path}: a TorchScript archive (torch.jit.save), not a checkpoint of weights; "
        "save the model's state_dict with torch.save(model.state_dict(), ...)"
      ) from None
    if "Weights only load failed" not in message:
      raise ValueError(
        f"{path}: not a readable PyTorch checkpoint, the file is truncated or "
        f"corrupt ({type(e).__name__}: {message or 'unexpected end'})"
      ) from None
    found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    what = (
      f"it references {found.group(1)}, which full unpickling would import and may call"
      if found
      else "it holds pickle instructions that only full unpickling runs"
    )
    raise ValueError(
      f"{path}: refused: the file cannot be loaded weights-only ({what}). Full unpickling "
      "can execute arbitrary code, so it was not attempted. If you trust the file, re-save "
      "its state_dict with torch.save(model.state_dict(), ...) as plain tensors."
    ) from None
