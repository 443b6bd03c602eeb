"""The on-disk run folder of a scoring run: completed chunks, then one merged file.

    <out>/run.json           what is being scored (image count, id hash and the
                             source's content id, model config, weights hash,
                             exits, dtype, chunk size, channel order); a restart
                             must match it exactly
    <out>/chunk-000000.npz   exit_scores float32 [n, L] and, when asked,
    <out>/chunk-000001.npz   embeddings float32 [n, D] of images; of each
                             FR model m fr/<m>/embeddings [n, D]; of each assessor
                             a quality/<a>/quality [n] (`chunk_members`)
    ...                      [k * chunk_size, (k + 1) * chunk_size)
    <out>/scores.npz         ids [N] str, exit_scores [N, L], embeddings [N, D]

Every file is written to a temporary name, fsynced and renamed when complete
(`exfiqa_jax.fileio.atomic_path`), so a killed run leaves only whole chunks; a
restart removes the temporaries of dead processes, checks every chunk (a
truncated or empty one is scored again) and scores the missing ones. One run at
a time: `start` takes the folder's lock (`fileio.FolderLock`; on several hosts,
host 0 takes it for the pod), so a second run on the same folder is refused
with a clear message instead of mixing its rows in.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import zipfile

import jax
import numpy as np

from exfiqa_jax.data import npz
from exfiqa_jax.fileio import FolderLock, atomic_path, read_json, remove_stale, write_text

RUN_FILE, SCORES_FILE = "run.json", "scores.npz"


def ids_sha256(ids) -> str:
  """sha256 of the ids, each length-prefixed: no two lists of ids share it."""
  h = hashlib.sha256()
  for i in np.asarray(ids).tolist():
    b = str(i).encode("utf-8")
    h.update(len(b).to_bytes(8, "little"))
    h.update(b)
  return h.hexdigest()


def weights_sha256(variables) -> str:
  """sha256 of every weight of a model's variables (params, batch_stats), in tree order."""
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(variables):
    leaf = leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return h.hexdigest()


def fingerprint(ids: np.ndarray, variables) -> dict[str, str]:
  """sha256 of the image ids and of every weight, so a restart cannot mix runs."""
  return {"ids_sha256": ids_sha256(ids), "weights_sha256": weights_sha256(variables)}


def chunk_path(out_dir: str, k: int) -> str:
  return os.path.join(out_dir, f"chunk-{k:06d}.npz")


FR_PREFIX = "fr/"  # stored arrays of FR model m: "fr/<m>/embeddings", "fr/<m>/embeddings_flip"
QUALITY_PREFIX = "quality/"  # of assessor a (scoring.assessors): "quality/<a>/quality" [n]


def chunk_members(run: dict) -> dict[str, int]:
  """The arrays every chunk of `run` (its run.json) holds, with their number of
  dimensions: exit_scores [n, L] (and embeddings [n, D]) of a quality model, and
  fr/<m>/embeddings [n, D] (and embeddings_flip) of each face-recognition model m."""
  want = {}
  if "num_layers" in run:
    want["exit_scores"] = 2
    if run.get("embedding"):
      want["embeddings"] = 2
  for m, fr in (run.get("fr_models") or {}).items():
    want[f"{FR_PREFIX}{m}/embeddings"] = 2
    if fr.get("flip"):
      want[f"{FR_PREFIX}{m}/embeddings_flip"] = 2
  for a in run.get("quality_methods") or {}:
    want[f"{QUALITY_PREFIX}{a}/quality"] = 1
  return want


def _chunk_ok(path: str, rows: int, want: dict[str, int]) -> bool:
  """Whether a chunk file is whole: a readable zip holding every array of `want` with its
  number of dimensions, and every array with `rows` rows."""
  try:
    members = npz.describe(path)
  except (ValueError, OSError, zipfile.BadZipFile):
    return False
  shapes = {k: v[0] for k, v in members.items()}
  return (
    bool(want)
    and all(k in shapes and len(shapes[k]) == nd for k, nd in want.items())
    and all(len(s) >= 1 and s[0] == rows for s in shapes.values())
  )


def lock(out_dir: str) -> FolderLock:
  return FolderLock(out_dir, "a scoring run")


def start(out_dir: str, run: dict, *, replace: bool = False) -> set[int]:
  """Locks the folder, creates or checks `run.json`; returns the chunks already complete.

  replace: a folder holding another run is emptied of that run's files (only
  those: run.json, chunks, scores.npz) instead of being refused.
  """
  os.makedirs(out_dir, exist_ok=True)
  lead = jax.process_index() == 0
  if lead:
    lock(out_dir).acquire()
    remove_stale(out_dir)
  path = os.path.join(out_dir, RUN_FILE)
  if os.path.exists(path):
    try:
      old = read_json(path, "run description")
    except ValueError:
      old = {"run.json": "unreadable"}
    if not isinstance(old, dict):
      old = {"run.json": "unreadable"}
    diff = sorted(k for k in set(old) | set(run) if old.get(k) != run.get(k))
    if diff and not (replace and lead):
      if lead:
        lock(out_dir).release()
      raise ValueError(
        f"{path}: this folder holds another run (differs in {diff}); use a new folder"
        + (" or pass --force to replace it" if lead else "")
      )
    if diff:
      for p in [*glob.glob(os.path.join(glob.escape(out_dir), "chunk-*.npz")), path]:
        os.remove(p)
      if os.path.exists(os.path.join(out_dir, SCORES_FILE)):
        os.remove(os.path.join(out_dir, SCORES_FILE))
  if not os.path.exists(path) and lead:
    write_text(path, json.dumps(run, indent=1, sort_keys=True) + "\n")
  size, n, want = run["chunk_size"], run["num_images"], chunk_members(run)
  done = set()
  for p in glob.glob(os.path.join(glob.escape(out_dir), "chunk-*.npz")):
    k = int(os.path.basename(p)[6:12])
    rows = min(size, n - k * size)
    if rows > 0 and _chunk_ok(p, rows, want):
      done.add(k)
    elif lead:
      print(f"{p}: truncated or damaged; scoring it again", file=sys.stderr)
      os.remove(p)
  return done


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
  with atomic_path(path) as tmp:
    npz.write_npz(tmp, arrays)


def score_file_arrays(s) -> dict[str, np.ndarray]:
  """The arrays of an `exfiqa score` file from a full pass's Scores `s`: paths [N],
  exit_scores [N, L], quality [N] (the last exit), embeddings [N, D]."""
  exits = s.exit_scores
  return dict(paths=s.ids, exit_scores=exits, quality=exits[:, -1], embeddings=s.embeddings)


def embed_file_arrays(s, name: str) -> dict[str, np.ndarray]:
  """The arrays of an `exfiqa embed` file: paths [N], FR model `name`'s embeddings
  [N, D] (and embeddings_flip [N, D] with flip)."""
  return dict(paths=s.ids, **s.fr[name])


def write_chunk(out_dir: str, k: int, arrays: dict[str, np.ndarray]) -> None:
  save_npz(chunk_path(out_dir, k), arrays)


def read_npz(path: str, keys=None, optional=()) -> dict[str, np.ndarray]:
  """Members `keys` (default all) of an .npz, bounded (`exfiqa_jax.data.npz`)."""
  return npz.read_npz(path, keys, optional)


def read_chunk(out_dir: str, k: int) -> dict[str, np.ndarray]:
  """A chunk for the merge; a damaged one is removed so that a rerun scores it again."""
  path = chunk_path(out_dir, k)
  try:
    return read_npz(path)
  except ValueError as e:
    os.remove(path)
    raise ValueError(f"{e}; removed, run again to score it again") from None


def write_scores(out_dir: str, ids: np.ndarray, arrays: dict[str, np.ndarray]) -> str:
  """Writes the merged `scores.npz` and releases the folder's lock."""
  path = os.path.join(out_dir, SCORES_FILE)
  try:
    save_npz(path, {"ids": ids, **arrays})
  finally:
    lock(out_dir).release()
  return path
