"""Score every image of a source: all exit scores and, if asked, the embedding,
and the embeddings of any face-recognition backbones, in one pass over the data.

    scores = score(exfiqa_jax.load("ckpt")[1:], dataset.images, "runs/lfw")
    scores.exit_scores  # float32 [N, L]; scores.ids [N]; scores.embeddings [N, D]
    arc = exfiqa_jax.load("arcface_ckpt")  # written by `exfiqa convert --family arcface`
    fr = [FRModel("arcface", arc.config, arc[1:], flip=True)]
    scores = score(vit, images, out, fr_models=fr)  # scores.fr["arcface"]["embeddings"]

Each batch is read, decoded and sent to the devices once; every model runs its
own compiled step on it (the same program `exfiqa score` / `exfiqa embed` runs
alone, so each model's outputs are bit for bit the same as alone).

Batches are split over this host's devices (`sharding.make_step`); the last
partial batch is padded and trimmed. Reading and decoding run on background
threads, ahead of the devices. With `out_dir`, results go to disk chunk by
chunk (format in `exfiqa_jax.scoring.run_folder`) and a restarted run continues where it
stopped; on several hosts each scores its own chunks and host 0 merges them.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from exfiqa_jax.models.fr_config import FRConfig
from exfiqa_jax.scoring import run_folder as resume
from exfiqa_jax.scoring.assessors import QualityModel, make_quality_step
from exfiqa_jax.scoring.sharding import (
  AXIS,
  chunk_bounds,
  gather_in_order,
  host_chunks,
  local_mesh,
  make_staged_step,
  make_step,
  pad_rows,
  replicate,
)

T = TypeVar("T")
R = TypeVar("R")


def prefetch(
  fn: Callable[[T], R], items: Iterable[T], depth: int = 4, workers: int = 2
) -> Iterator[tuple[T, R]]:
  """Yields (item, fn(item)) in order, computing up to `depth` ahead on `workers` threads.

  An exception raised by `fn` surfaces at its item, in order.
  """
  with ThreadPoolExecutor(max_workers=workers) as pool:
    queue: collections.deque = collections.deque()
    for item in items:
      queue.append((item, pool.submit(fn, item)))
      if len(queue) > depth:
        head, future = queue.popleft()
        yield head, future.result()
    while queue:
      head, future = queue.popleft()
      yield head, future.result()


def run_chunks(
  steps: list[tuple[str, Callable, tuple]],
  images,
  bounds: list[tuple[int, int]],
  todo: list[int],
  batch_size: int,
  mesh,
  out_dir: str | None,
  progress: bool | str,
):
  """Scores chunks `todo` of `images` with every `(prefix, step, variables)` of `steps`:
  `step(*variables, uint8 batch) -> {name: [B, ...]}` (a step with `takes_rows` also gets
  the batch's global image indices, uint32 [B]), stored as `prefix + name`.

  Each batch is read and put on the devices once, for all steps. Writes each
  finished chunk to `out_dir` (`resume.write_chunk`), or, with no `out_dir`,
  returns {name: array} of all chunks in order.
  """
  sharding = jax.NamedSharding(mesh, jax.P(AXIS))
  items = [
    (k, s, min(s + batch_size, bounds[k][1]), s + batch_size >= bounds[k][1])
    for k in todo
    for s in range(bounds[k][0], bounds[k][1], batch_size)
  ]

  def load(it):
    x = pad_rows(images.read(range(it[1], it[2])), batch_size)
    rows = np.arange(it[1], it[1] + batch_size, dtype=np.uint32)  # global image indices
    return jax.device_put((x, rows), sharding)

  parts, rows = {}, []

  def finish(item, out, bar):
    k, s, e, last = item
    rows.append({name: np.asarray(o)[: e - s] for name, o in out.items()})
    bar.update(e - s)
    if last:
      arrays = {n: np.concatenate([r[n] for r in rows]) for n in rows[0]}
      rows.clear()
      check_finite(arrays, images.ids[bounds[k][0] : bounds[k][1]])
      if out_dir is None:
        parts[k] = arrays
      else:
        resume.write_chunk(out_dir, k, arrays)

  def dispatch(batch):
    x, rows = batch
    return {
      prefix + name: o
      for prefix, step, variables in steps
      for name, o in (
        step(*variables, x, rows) if getattr(step, "takes_rows", False) else step(*variables, x)
      ).items()
    }

  total = sum(b - a for a, b in (bounds[k] for k in todo))
  label = progress if isinstance(progress, str) else "scoring"  # a str names the bar
  with tqdm(total=total, unit="img", disable=not progress, desc=label) as bar:
    pending = None
    for item, x in prefetch(load, items):
      out = dispatch(x)  # dispatched; the previous batch is collected meanwhile
      if pending:
        finish(*pending, bar)
      pending = (item, out)
    if pending:
      finish(*pending, bar)
  return gather_in_order(parts, len(bounds)) if out_dir is None else None


@dataclasses.dataclass(frozen=True)
class FRModel:
  """A face-recognition backbone to run in the scoring pass (`exfiqa_jax.load(path)`)."""

  name: str
  config: FRConfig
  variables: tuple  # (graphdef, params, batch_stats)
  flip: bool = False  # also embed the mirrored images
  channel_order: str | None = None  # the channel order the network takes; default its family's

  @property
  def model_order(self) -> str:
    return self.channel_order or self.config.channel_order


if TYPE_CHECKING:
  from exfiqa_jax.data.sources import ImageSource


def check_finite(arrays: dict[str, np.ndarray], ids) -> None:
  """Refuses (one-line ValueError, before the chunk is written) a model output [n, ...]
  holding NaN or infinity for any image of `ids` [n]; a policy run's exit_scores are
  checked up to each image's `blocks_run` (NaN after it by design)."""
  for name, a in arrays.items():
    if not np.issubdtype(a.dtype, np.floating):
      continue
    ok = np.isfinite(a).reshape(len(a), -1)
    run = arrays.get(name.replace("exit_scores", "blocks_run")) if "exit_scores" in name else None
    if run is not None:
      ok |= np.arange(ok.shape[1])[None] >= np.asarray(run)[:, None]
    bad = np.flatnonzero(~ok.all(1))
    if len(bad):
      raise ValueError(
        f"the model's {name} are NaN or infinite for {len(bad)} of {len(a)} images (first: "
        f"{ids[bad[0]]}); nothing written (its weights or settings do not work on these images)"
      )


FR_PREFIX = resume.FR_PREFIX  # "fr/<m>/embeddings", "fr/<m>/embeddings_flip" of FR model m
QUALITY_PREFIX = resume.QUALITY_PREFIX  # "quality/<a>/quality" of assessor a


@dataclasses.dataclass(frozen=True)
class Scores:
  ids: np.ndarray  # [N] str
  exit_scores: np.ndarray | None  # [N, L] float32: exit 1..L (None: no ViT-FIQA model ran)
  embeddings: np.ndarray | None  # [N, D] float32, before L2 normalisation
  # FR model name -> {"embeddings": [N, D] raw, "embeddings_flip": [N, D] with flip}
  fr: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)
  blocks_run: np.ndarray | None = None  # [N] int32: exits each image ran (with a policy only)
  quality: np.ndarray | None = None  # [N] float32: the policy's fused quality (with a policy)
  # assessor name -> [N] float32 quality, higher = better (`scoring.assessors`)
  assessors: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  @classmethod
  def from_arrays(cls, ids: np.ndarray, z: dict[str, np.ndarray]) -> "Scores":
    fr: dict[str, dict[str, np.ndarray]] = {}
    assessors: dict[str, np.ndarray] = {}
    for key, value in z.items():
      if key.startswith(FR_PREFIX):
        name, _, what = key[len(FR_PREFIX) :].rpartition("/")
        fr.setdefault(name, {})[what] = value
      elif key.startswith(QUALITY_PREFIX):
        assessors[key[len(QUALITY_PREFIX) :].rpartition("/")[0]] = value
    return cls(
      ids,
      z.get("exit_scores"),
      z.get("embeddings"),
      fr,
      z.get("blocks_run"),
      z.get("quality"),
      assessors,
    )

  @classmethod
  def read(cls, path: str) -> "Scores":
    z = resume.read_npz(path)
    return cls.from_arrays(z["ids"], z)


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def check_input_size(
  fr_models: Sequence[FRModel | QualityModel],
  images: ImageSource | None = None,
  label: str | None = None,
) -> None:
  """Refuses (one line, before any image is read) a face-recognition or assessor network whose
  checkpoint takes another input size than the images (`data.sources.IMAGE_SIZE`, the
  aligned crops every source reads, or an in-memory source's size): a 224-pixel model
  on 112-pixel crops would fail deep in the first batch. label: how the message names the
  network (e.g. its checkpoint path); default its kind and name."""
  from exfiqa_jax.data.sources import IMAGE_SIZE

  arrays = getattr(images, "images", None)
  size = int(arrays.shape[1]) if isinstance(arrays, np.ndarray) and arrays.ndim == 4 else None
  size = size or IMAGE_SIZE
  for m in fr_models:
    if m.config.image_size != size:
      what = "FR model" if isinstance(m, FRModel) else "assessor"
      raise ValueError(
        f"{label or f'{what} {m.name!r}'} ({m.config.family}) takes {m.config.image_size}x"
        f"{m.config.image_size} images; the images are {size}x{size} aligned crops"
      )


def score(
  variables,
  images: ImageSource,
  out_dir: str | None = None,
  *,
  fr_models: Sequence[FRModel] = (),
  quality_models: Sequence[QualityModel] = (),
  batch_size: int = 32,
  chunk_size: int | None = None,
  num_layers: int | None = None,
  embedding: bool = True,
  dtype=jnp.float32,
  progress: bool | str = True,
  devices=None,
  replace: bool = False,
  policy=None,
) -> Scores:
  """variables: (graphdef, params, batch_stats), e.g. `exfiqa_jax.load(path)[1:]`, or
  None to run only `fr_models` (all in the same pass; `dtype` is every model's).

  `chunk_size` (default 32 batches) must be a multiple of `batch_size`, and
  `batch_size` a multiple of the number of local devices. replace: an `out_dir`
  holding another run is cleared of it instead of refused (`run_folder.start`).

  policy: an adaptive early-exit policy (`exfiqa_jax.adaptive.policy.Policy`):
  each image runs only the blocks the policy asks for (`exfiqa_jax.models.staged`);
  `exit_scores` holds NaN after the exit where an image stopped, and the scores
  gain `blocks_run` [N] and `quality` [N] (the policy's fused quality). No
  embedding is computed (stopped images never reach the last block).
  """
  mesh = local_mesh(devices)
  chunk_size = chunk_size or 32 * batch_size
  if batch_size % mesh.size or chunk_size % batch_size:
    raise ValueError(
      f"batch_size {batch_size} must be a multiple of the {mesh.size} local "
      f"devices, and chunk_size {chunk_size} a multiple of batch_size"
    )
  if len(images) == 0:
    raise ValueError("no images to score")
  if variables is None and not fr_models and not quality_models:
    raise ValueError("nothing to run: no ViT-FIQA variables and no face-recognition models")
  for what, ms in (("FR model", fr_models), ("assessor", quality_models)):
    if len({m.name for m in ms}) < len(ms) or any("/" in m.name for m in ms):
      raise ValueError(f"{what} names must be unique, without '/': {[m.name for m in ms]}")
  if out_dir is None and jax.process_count() > 1:
    raise ValueError("scoring on several hosts needs out_dir on a shared file system")
  check_input_size([*fr_models, *quality_models], images)
  if policy is not None and (variables is None or num_layers is not None):
    raise ValueError("a policy needs the ViT-FIQA variables and chooses the exits (no num_layers)")
  order = images.channel_order
  run = dict(
    num_images=len(images),
    chunk_size=chunk_size,
    batch_size=batch_size,
    dtype=jnp.dtype(dtype).name,
    channel_order=order,
    content_id=getattr(images, "content_id", None),
  )
  steps = []
  if variables is not None:
    graphdef, params, batch_stats = variables
    if policy is None:
      step = make_step(
        graphdef, mesh, num_layers=num_layers, embedding=embedding, dtype=dtype, channel_order=order
      )  # the ViT-FIQA input rule needs no config
    else:
      step = make_staged_step(graphdef, policy, dtype=dtype, channel_order=order)
      embedding = False
      run["policy"] = policy.to_dict()
    replicated = replicate((params, batch_stats), mesh)
    steps.append(("", step, replicated))
    run.update(num_layers=num_layers, embedding=embedding)
    run.update(resume.fingerprint(images.ids, replicated))
  for m in fr_models:
    graphdef, params, batch_stats = m.variables
    step = make_step(
      graphdef,
      mesh,
      m.config,
      flip=m.flip,
      dtype=dtype,
      channel_order=order,
      model_order=m.model_order,
    )
    replicated = replicate((params, batch_stats), mesh)
    steps.append((f"{FR_PREFIX}{m.name}/", step, replicated))
    fp = resume.fingerprint(images.ids, replicated)
    run["ids_sha256"] = fp["ids_sha256"]
    run.setdefault("fr_models", {})[m.name] = dict(
      config=m.config.to_dict(),
      flip=m.flip,
      model_channel_order=m.model_order,
      weights_sha256=fp["weights_sha256"],
    )
  for m in quality_models:
    graphdef, params, batch_stats = m.variables
    step = make_quality_step(
      graphdef,
      mesh,
      m.config,
      m.method,
      tuple(m.settings),
      channel_order=order,
      model_order=m.model_order,
    )
    replicated = replicate((params, batch_stats), mesh)
    steps.append((f"{QUALITY_PREFIX}{m.name}/", step, replicated))
    fp = resume.fingerprint(images.ids, replicated)
    run["ids_sha256"] = fp["ids_sha256"]
    run.setdefault("quality_methods", {})[m.name] = dict(
      method=m.method,
      settings=dict(m.settings),
      config=m.config.to_dict(),
      model_channel_order=m.model_order,
      weights_sha256=fp["weights_sha256"],
    )
  bounds = chunk_bounds(len(images), chunk_size)
  done = resume.start(out_dir, run, replace=replace) if out_dir is not None else set()
  todo = [
    k for k in host_chunks(len(bounds), jax.process_index(), jax.process_count()) if k not in done
  ]
  parts = run_chunks(steps, images, bounds, todo, batch_size, mesh, out_dir, progress)
  if out_dir is None:
    return Scores.from_arrays(images.ids, parts)
  _sync("exfiqa-score-chunks")
  if jax.process_index() == 0:
    chunks = {k: resume.read_chunk(out_dir, k) for k in range(len(bounds))}
    resume.write_scores(out_dir, images.ids, gather_in_order(chunks, len(bounds)))
  _sync("exfiqa-score-merged")
  return Scores.read(os.path.join(out_dir, resume.SCORES_FILE))
