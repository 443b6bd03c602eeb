"""Adaptive early-exit policies: when an image's fused quality is settled (docs/protocol.md §10).

A policy decides, per image and on the host, after which exit the image stops.
It is consulted only at its `stages` (exits, counted 1..depth, after which an
image may stop; the last is always `depth`, where every image stops). An image
that stops after exit k has run k blocks and gets the depth-weighted fusion of
its exits 1..k (w_i = i, renormalised over 1..k) as its quality: at k = depth
this is the static depth-weighted fusion of all exits.

Rules (each has one knob that trades compute for quality; `calibration` holds
the numbers fitted on calibration images only, see `exfiqa_jax.adaptive.calibrate`):

- `delta`: stop after exit k when the running fusion changed by less than
  knob * scale from exit k-1 to exit k (scale: the standard deviation of the
  full fusion over the calibration images). knob 0 never stops early.
- `band`: stop after exit k when the running fusion lies outside the band
  [lo_k, hi_k], the calibration images' quantiles knob and 1 - knob of the
  running fusion at exit k (very low or very high quality is decided early).
  knob 0 never stops early (no band edges).
- `gate`: a logistic gate per stage on features of the exits so far predicts
  that later exits will not move the image out of its rank bucket; stop when
  its probability exceeds knob. knob 1 never stops early.

`save`/`load` write and read one policy or a knob sweep of several as JSON
(atomically); `for_budget` picks from a sweep the knob whose calibrated mean
GFLOPs per image is the largest within a budget.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from exfiqa_jax.fileio import read_json, write_text

POLICIES = ("delta", "band", "gate")
POLICY_FILE = "policies.json"  # beside the checkpoint: every policy x knob
FRACTION, SEED = 0.5, 0  # a study's default calibration split: fraction of pairs, seed
FORMAT = "exfiqa-adaptive-policies"
VERSION = 1
MAX_POLICY_BYTES = 4 << 20  # a policy file is a few KB; read_json refuses more


def default_stages(depth: int, every: int = 3) -> tuple[int, ...]:
  """Stop points every `every` exits, ending at depth: (3, 6, 9, 12) for depth 12."""
  if depth < 1 or every < 1:
    raise ValueError(f"need depth >= 1 and every >= 1, got depth {depth}, every {every}")
  return tuple(range(every, depth, every)) + (depth,)


def check_stages(stages: Sequence[int], depth: int) -> tuple[int, ...]:
  """Returns stages as a tuple of ints; ValueError unless increasing in 1..depth, last == depth."""
  s = tuple(int(k) for k in stages)
  if not s or s[-1] != depth or any(a >= b for a, b in zip(s[:-1], s[1:], strict=True)) or s[0] < 1:
    raise ValueError(
      f"stages must increase within 1..{depth} and end at the depth {depth}, got {list(s)}"
    )
  return s


def running_fusion(exits: np.ndarray, upto: int | None = None) -> np.ndarray:
  """Depth-weighted fusion of exits 1..k for every k, float64: [b, L] -> [b, upto].

  Column k-1 is sum_{i<=k} i x_i / sum_{i<=k} i, the sums in float64 in exit
  order. Columns beyond `upto` (default all) are not read, so they may hold NaN.
  """
  x = np.asarray(exits, np.float64)
  upto = x.shape[1] if upto is None else int(upto)
  w = np.arange(1, upto + 1, dtype=np.float64)
  return np.cumsum(x[:, :upto] * w, axis=1) / np.cumsum(w)


FEATURES = ("q_k", "q_k - q_(k-1)", "x_k", "x_k - x_(k-1)", "std(x_1..x_k)")


def gate_features(exits: np.ndarray, k: int) -> np.ndarray:
  """Features of the exits 1..k of b images for the gate, float64 [b, 5]: the running
  fusion q_k, its change q_k - q_{k-1}, the exit x_k, its change x_k - x_{k-1}, and
  the standard deviation of x_1..x_k (changes are 0 at k = 1)."""
  x = np.asarray(exits, np.float64)[:, :k]
  q = running_fusion(x, k)
  dq = q[:, -1] - q[:, -2] if k > 1 else np.zeros(len(x))
  dx = x[:, -1] - x[:, -2] if k > 1 else np.zeros(len(x))
  return np.stack([q[:, -1], dq, x[:, -1], dx, x.std(axis=1)], axis=1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
  return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclasses.dataclass(frozen=True)
class Policy:
  """One policy at one knob value.

  name: one of POLICIES; knob: its compute/quality knob; stages: exits (1-based
  block counts) after which an image may stop, last == depth; depth: the
  model's exits; calibration: the fitted numbers (JSON-able); gflops: the mean
  GFLOPs per image on the calibration images (NaN if not calibrated on costs).
  """

  name: str
  knob: float
  stages: tuple[int, ...]
  depth: int
  calibration: dict
  gflops: float = math.nan

  def __post_init__(self):
    if self.name not in POLICIES:
      raise ValueError(f"unknown policy {self.name!r}; policies are {', '.join(POLICIES)}")
    object.__setattr__(self, "stages", check_stages(self.stages, self.depth))
    if not math.isfinite(float(self.knob)):
      raise ValueError(f"policy {self.name}: knob must be a finite number, got {self.knob}")
    object.__setattr__(self, "knob", float(self.knob))

  @property
  def never_stops_early(self) -> bool:
    """True when this knob runs every image to the last exit, whatever the data."""
    return self.knob >= 1.0 if self.name == "gate" else self.knob <= 0.0

  def stop(self, exits: np.ndarray, k: int) -> np.ndarray:
    """exits: float32 [b, >= k] (exit scores 1..k of b images; later columns unread)
    -> bool [b]: does the image stop after exit k. Always True at k == depth;
    always False at an exit that is not a stage. Pure numpy."""
    k = int(k)
    x = np.asarray(exits)
    if x.ndim != 2 or x.shape[1] < k or not 1 <= k <= self.depth:
      raise ValueError(
        f"stop needs exits [b, >= {k}] with 1 <= k <= {self.depth}, got shape {x.shape}, k {k}"
      )
    b = x.shape[0]
    if k == self.depth:
      return np.ones(b, bool)
    if k not in self.stages or self.never_stops_early:
      return np.zeros(b, bool)
    s = self.stages.index(k)
    c = self.calibration
    if self.name == "delta":
      if k == 1:
        return np.zeros(b, bool)
      q = running_fusion(x, k)
      return np.abs(q[:, -1] - q[:, -2]) < self.knob * float(c["scale"])
    if self.name == "band":
      q = running_fusion(x, k)[:, -1]
      lo, hi = c["lo"][s], c["hi"][s]
      out = np.zeros(b, bool)
      if lo is not None:
        out |= q < float(lo)
      if hi is not None:
        out |= q > float(hi)
      return out
    f = (gate_features(x, k) - np.asarray(c["mean"][s])) / np.asarray(c["std"][s])
    p = _sigmoid(f @ np.asarray(c["w"][s], np.float64) + float(c["b"][s]))
    return p > self.knob

  def quality(self, exits: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """The fused quality of images that stopped after exit k (an int or [b]): the
    depth-weighted fusion over exits 1..k (`running_fusion`: float64 sums in exit
    order) -> float32 [b]. Exits beyond an image's k do not enter (they may be NaN)."""
    x = np.asarray(exits, np.float64)
    k = np.broadcast_to(np.asarray(k, np.int64), (x.shape[0],))
    if x.ndim != 2 or np.any(k < 1) or np.any(k > min(x.shape[1], self.depth)):
      raise ValueError(f"quality needs exits [b, L] and 1 <= k <= {self.depth}, got {x.shape}")
    q = running_fusion(x, int(k.max()) if len(k) else 1)
    return q[np.arange(len(k)), k - 1].astype(np.float32)

  def to_dict(self) -> dict[str, Any]:
    return {
      "name": self.name,
      "knob": self.knob,
      "stages": list(self.stages),
      "depth": self.depth,
      "gflops": None if math.isnan(self.gflops) else float(self.gflops),
      "calibration": self.calibration,
    }

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Policy:
    g = d.get("gflops")
    return cls(
      name=str(d["name"]),
      knob=float(d["knob"]),
      stages=tuple(int(k) for k in d["stages"]),
      depth=int(d["depth"]),
      calibration=dict(d["calibration"]),
      gflops=math.nan if g is None else float(g),
    )


def _numbers(v: Any, n: int, width: int | None = None, none_ok: bool = False) -> bool:
  """v is a list of n numbers (or None where none_ok), or of n lists of `width` numbers."""

  def num(x):
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    return ok or (none_ok and x is None)

  if not isinstance(v, list) or len(v) != n:
    return False
  if width is None:
    return all(num(x) for x in v)
  return all(isinstance(r, list) and len(r) == width and all(num(x) for x in r) for r in v)


def check_calibration(p: Policy) -> None:
  """ValueError (one line) unless p.calibration holds what p's rule reads, one entry
  per stage (band edges, gate weights) or its scale (delta)."""
  from exfiqa_jax.adaptive.calibrate import check_knob

  check_knob(p.name, p.knob)  # the knob's range, as calibration takes it
  if not (math.isnan(p.gflops) or (math.isfinite(p.gflops) and p.gflops > 0)):
    raise ValueError(f"policy {p.name} knob {p.knob:g}: gflops must be positive, got {p.gflops}")
  c, n = p.calibration, len(p.stages)
  if p.name == "delta":
    ok = _numbers([c.get("scale")], 1) and c["scale"] >= 0
    want = "a scale >= 0"
  elif p.name == "band":
    ok = _numbers(c.get("lo"), n, none_ok=True) and _numbers(c.get("hi"), n, none_ok=True)
    want = f"lo and hi: {n} band edges (or null) each"
  else:
    f = len(FEATURES)
    ok = all(_numbers(c.get(k), n, f) for k in ("mean", "std", "w")) and _numbers(c.get("b"), n)
    ok = ok and all(x > 0 for row in c["std"] for x in row)  # the features are divided by it
    want = f"mean, std, w: {n} lists of {f} numbers each (std > 0), and b: {n} numbers"
  if not ok:
    raise ValueError(f"policy {p.name} knob {p.knob:g}: calibration needs {want}")


def stop_exits(policy: Policy, exits: np.ndarray) -> np.ndarray:
  """The exit after which each image stops under `policy`, given all its exits:
  [N, depth] -> int [N] in policy.stages. (What staged inference does, simulated.)"""
  x = np.asarray(exits)
  out = np.full(x.shape[0], policy.depth, np.int64)
  alive = np.ones(x.shape[0], bool)
  for k in policy.stages:
    idx = np.flatnonzero(alive)
    if idx.size == 0:
      break
    stop = policy.stop(x[idx, :k], k)
    out[idx[stop]] = k
    alive[idx[stop]] = False
  return out


def mean_gflops(blocks_run: np.ndarray, cost: Sequence[float]) -> float:
  """Mean GFLOPs per image from the exits actually run: cost [L] is the GFLOPs of
  running to exit k (`exfiqa_jax.models.flops.exit_gflops`). Summed per exit as
  (count_k / N) cost_k, so every image at one exit gives exactly cost_k."""
  b = np.asarray(blocks_run, np.int64)
  cost = np.asarray(cost, np.float64)
  counts = np.bincount(b, minlength=len(cost) + 1)[1:]
  return float(sum((c / len(b)) * cost[k] for k, c in enumerate(counts) if c))


def save(policy: Policy | Sequence[Policy], path: str, **meta: Any) -> None:
  """Writes one policy, or a knob sweep of several, as JSON to `path` (atomic).
  meta: more JSON-able fields for the file (e.g. the exit costs, the metrics)."""
  items = [policy] if isinstance(policy, Policy) else list(policy)
  doc = {"format": FORMAT, "version": VERSION, **meta, "policies": [p.to_dict() for p in items]}
  write_text(path, json.dumps(doc, indent=1, allow_nan=False) + "\n")


def load_sweep(path: str) -> list[Policy]:
  """All policies of a file `save` wrote. ValueError (one line, naming the file)
  for a missing, unreadable, foreign or newer file, or a bad entry."""
  try:
    doc = read_json(path, "policy file", MAX_POLICY_BYTES)
  except FileNotFoundError:
    raise ValueError(f"{path}: no such policy file") from None
  if not isinstance(doc, dict) or doc.get("format") != FORMAT:
    raise ValueError(f"{path}: not a policy file (no format {FORMAT!r})")
  if doc.get("version") != VERSION:
    raise ValueError(
      f"{path}: policy file version {doc.get('version')!r}, this exfiqa reads version {VERSION}"
    )
  items = doc.get("policies")
  if not isinstance(items, list) or not items:
    raise ValueError(f"{path}: policy file holds no policies")
  out = []
  for i, d in enumerate(items):
    try:
      out.append(Policy.from_dict(d))
      check_calibration(out[-1])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
      msg = str(e).splitlines()[0] if str(e) else type(e).__name__
      raise ValueError(f"{path}: policy {i} is malformed: {msg}") from None
  return out


def load(path: str, name: str | None = None) -> Policy:
  """The one policy of a file (or the only one named `name`); ValueError naming the file."""
  items = [p for p in load_sweep(path) if name is None or p.name == name]
  if len(items) != 1:
    raise ValueError(
      f"{path}: holds {len(items)} policies{f' named {name}' if name else ''}, need exactly one "
      "(pick a knob sweep entry with a budget)"
    )
  return items[0]


def _compute_order(p: Policy) -> float:
  """Larger = more compute at the same policy: delta/band with a smaller knob, gate larger."""
  return p.knob if p.name == "gate" else -p.knob


def for_budget(
  policies: Sequence[Policy] | str | os.PathLike, gflops: float, name: str | None = None
) -> Policy:
  """The knob whose calibrated mean GFLOPs per image is the largest <= `gflops`
  (ties: the knob that stops fewest images). policies: a list or a saved sweep
  file; name: keep only that policy. ValueError (one line) when none fits."""
  source = None
  if isinstance(policies, (str, os.PathLike)):
    source = os.fspath(policies)
    policies = load_sweep(source)
  where = f"{source}: " if source else ""
  if not math.isfinite(float(gflops)) or float(gflops) <= 0:
    raise ValueError(f"budget must be a positive number of GFLOPs, got {gflops}")
  if name is not None and name not in POLICIES:
    raise ValueError(f"unknown policy {name!r}; policies are {', '.join(POLICIES)}")
  cand = [p for p in policies if name is None or p.name == name]
  if not cand:
    raise ValueError(f"{where}no policy {name!r} in the sweep")
  if any(math.isnan(p.gflops) for p in cand):
    raise ValueError(f"{where}a policy has no calibrated GFLOPs; run `exfiqa adaptive` first")
  fit = [p for p in cand if p.gflops <= float(gflops)]
  if not fit:
    low = min(p.gflops for p in cand)
    raise ValueError(
      f"{where}budget {float(gflops):g} GFLOPs is below the cheapest calibrated knob "
      f"({low:.4f} GFLOPs per image)"
    )
  return max(fit, key=lambda p: (p.gflops, _compute_order(p)))


def check_fingerprints(path: str, weights_sha256: str, cost: Sequence[float]) -> str:
  """Refuses (one-line ValueError) a policy file calibrated on other weights or costed
  for another model: its `weights_sha256` (written when `exfiqa adaptive` had
  --checkpoint) against the model's, its `cost_gflops` (the GFLOPs per exit its
  calibrated GFLOPs are in) against the model's exit costs. Returns a note for the
  summary line ("" when both were checked)."""
  doc = read_json(path, "policy file", MAX_POLICY_BYTES)
  saved_cost, saved_weights = doc.get("cost_gflops"), doc.get("weights_sha256")
  if saved_cost is None:
    raise ValueError(
      f"{path}: the policy file states no exit costs (cost_gflops; written by an older "
      "exfiqa): calibrate it again with `exfiqa adaptive`"
    )
  if not _numbers(saved_cost, len(saved_cost)) or not np.allclose(
    np.asarray(saved_cost, np.float64), np.asarray(cost, np.float64), rtol=1e-6, atol=0
  ):
    show = ", ".join(f"{float(g):.4g}" for g in cost)
    raise ValueError(
      f"{path}: calibrated on exit costs {saved_cost} GFLOPs, this model's are [{show}] "
      "(another model): calibrate policies for this checkpoint with `exfiqa adaptive`"
    )
  if saved_weights is None:
    return "; policy file not tied to weights (calibrated without --checkpoint)"
  if saved_weights != weights_sha256:
    raise ValueError(
      f"{path}: calibrated on other weights (sha256 {str(saved_weights)[:12]}..., this "
      f"checkpoint's {weights_sha256[:12]}...): calibrate policies for this checkpoint with "
      "`exfiqa adaptive --checkpoint`"
    )
  return ""


def choose(
  name: str | None, budget: float | None, policy_file: str | None, checkpoint: str, depth: int
) -> tuple[Policy, str] | None:
  """The policy `exfiqa score --policy NAME --budget G [--policy-file F]` asks for and
  the file it came from (default: POLICY_FILE in the checkpoint folder), or None
  without NAME; one-line ValueError. The caller checks the file's fingerprints
  (`check_fingerprints`)."""
  if name is None:
    if budget is not None or policy_file is not None:
      raise ValueError("--budget and --policy-file go with --policy NAME")
    return None
  if name not in POLICIES:
    raise ValueError(f"unknown policy {name!r}; policies are {', '.join(POLICIES)}")
  if budget is None:
    raise ValueError("--policy needs --budget GFLOPS (mean GFLOPs per image)")
  path = policy_file or os.path.join(checkpoint, POLICY_FILE)
  policy = for_budget(path, budget, name)
  if policy.depth != depth:
    raise ValueError(f"{path}: policy {policy.name} is for depth {policy.depth}, the model {depth}")
  return policy, path


def run_arrays(s, policy: Policy, path: str, cost: Sequence[float]) -> tuple[dict, str]:
  """The output arrays of a policy scoring run `s` (exfiqa_jax.scoring.score.Scores,
  `blocks_run` [N]) and a note for the summary line; cost: GFLOPs per exit [L]."""
  ran = mean_gflops(s.blocks_run, cost)
  meta = dict(
    name=policy.name,
    knob=policy.knob,
    stages=list(policy.stages),
    calibrated_gflops=policy.gflops,
    mean_gflops=ran,
    full_gflops=cost[-1],
    policy_file=path,
  )
  arrays = dict(
    paths=s.ids,
    exit_scores=s.exit_scores,
    quality=s.quality,
    blocks_run=s.blocks_run,
    policy=np.array(json.dumps(meta, sort_keys=True)),
  )
  return arrays, f"; policy {policy.name} knob {policy.knob:g}, {ran:.4f} GFLOPs per image"
