"""The on-disk run folder of a scoring run: completed chunks, then one merged file.

    <out>/run.json           what is being scored (image count and id hash, model
                             config, weights hash, exits, dtype, chunk size,
                             channel order); a restart must match it exactly
    <out>/chunk-000000.npz   exit_scores float32 [n, L] and, when asked,
    <out>/chunk-000001.npz   embeddings float32 [n, D] of images
    ...                      [k * chunk_size, (k + 1) * chunk_size)
    <out>/scores.npz         ids [N] str, exit_scores [N, L], embeddings [N, D]

Every file is written to a temporary name and renamed when complete, so a
killed run leaves only whole chunks; a restart scores the missing ones.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os

import jax
import numpy as np

from exfiqa_jax.fileio import atomic_path, write_text

RUN_FILE, SCORES_FILE = "run.json", "scores.npz"


def fingerprint(ids: np.ndarray, variables) -> dict[str, str]:
  """sha256 of the image ids and of every weight, so a restart cannot mix runs."""
  ids_hash = hashlib.sha256("\n".join(ids.tolist()).encode()).hexdigest()
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(variables):
    leaf = leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return {"ids_sha256": ids_hash, "weights_sha256": h.hexdigest()}


def chunk_path(out_dir: str, k: int) -> str:
  return os.path.join(out_dir, f"chunk-{k:06d}.npz")


def start(out_dir: str, run: dict) -> set[int]:
  """Creates or checks `run.json`; returns the chunks already complete."""
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, RUN_FILE)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
    diff = sorted(k for k in set(old) | set(run) if old.get(k) != run.get(k))
    if diff:
      raise ValueError(
        f"{path}: this folder holds another run (differs in {diff}); use a new folder"
      )
  else:
    write_text(path, json.dumps(run, indent=1, sort_keys=True) + "\n")
  done = glob.glob(os.path.join(glob.escape(out_dir), "chunk-*.npz"))
  return {int(os.path.basename(p)[6:12]) for p in done}


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    np.savez(f, **arrays)


def write_chunk(out_dir: str, k: int, arrays: dict[str, np.ndarray]) -> None:
  save_npz(chunk_path(out_dir, k), arrays)


def read_npz(path: str) -> dict[str, np.ndarray]:
  with np.load(path, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


def write_scores(out_dir: str, ids: np.ndarray, arrays: dict[str, np.ndarray]) -> str:
  """Writes the merged `scores.npz`; clears temporary files a killed run left."""
  for stale in glob.glob(os.path.join(glob.escape(out_dir), ".chunk-*.tmp-*")):
    os.remove(stale)
  path = os.path.join(out_dir, SCORES_FILE)
  save_npz(path, {"ids": ids, **arrays})
  return path
