"""Plain numpy versions of the sweep's work, the baselines of sweep_bench.py.

`loop_variant` is what a per-variant script does: fuse one variant, then ERC at
each FMR and the EDC partial areas with numpy inside, called in a Python loop.
`vectorised_chunk` does the same work for a chunk of variants at once, as [B, ...]
arrays. Both follow docs/protocol.md §3-5 (stable quality order, exact FMR choice).
"""

from __future__ import annotations

import numpy as np


def fuse(exits, masks, rule, weights):
  """exits [N, L], masks/weights [B, L] -> fused [B, N]."""
  if rule in ("mean", "weighted"):
    w = np.where(masks, weights if rule == "weighted" else 1.0, 0.0)
    return (w / w.sum(1, keepdims=True)) @ exits.T
  x = np.where(masks[:, None, :], exits[None], np.nan)
  return {"median": np.nanmedian, "min": np.nanmin, "max": np.nanmax}[rule](x, axis=2)


def erc_areas(order, scores, genuine, fmrs):
  """order [B, P] stable quality order -> ERC areas [B, F] (trapezoid, rates i/20)."""
  b, p = order.shape
  fnmr = np.zeros((b, 20, len(fmrs)))
  for i in range(20):
    kept = order[:, i * p // 20 :]
    by_score = np.argsort(-scores[kept], axis=1, kind="stable")
    s, g = (
      np.take_along_axis(scores[kept], by_score, 1),
      np.take_along_axis(genuine[kept], by_score, 1),
    )
    ci, cg = np.cumsum(~g, 1), np.cumsum(g, 1)
    n_imp, n_gen = ci[:, -1:], cg[:, -1:]
    end = np.c_[s[:, 1:] != s[:, :-1], np.ones((b, 1), bool)]
    start_cg = np.maximum.accumulate(
      np.where(np.c_[np.ones((b, 1), bool), end[:, :-1]], cg - g, 0), 1
    )
    for f, fmr in enumerate(fmrs):
      den = round(1 / fmr)
      dist = np.where(end, np.abs(ci * den - n_imp), np.iinfo(np.int64).max)
      t = dist.shape[1] - 1 - np.argmin(dist[:, ::-1], 1)  # the smallest score among minimisers
      fnmr[:, i, f] = (n_gen[:, 0] - np.take_along_axis(start_cg, t[:, None], 1)[:, 0]) / n_gen[
        :, 0
      ]
  return (fnmr.sum(1) - (fnmr[:, 0] + fnmr[:, -1]) / 2) / 20


def edc_areas(order, pq, genuine, error, limits):
  """order [B, P] -> EDC partial areas [B, K] (step-wise, tie groups together)."""
  g = genuine[order]
  q, e = np.take_along_axis(pq, order, 1), error[order]
  n = genuine.sum()
  new = np.c_[np.ones((len(q), 1), bool), q[:, 1:] != q[:, :-1]]
  g_before, e_before = np.cumsum(g, 1) - g, np.cumsum(e, 1) - e
  g_start = np.maximum.accumulate(np.where(new, g_before, 0), 1)
  e_start = np.maximum.accumulate(np.where(new, e_before, 0), 1)
  frac = (error.sum() - e_start) / (n - g_start)
  width = np.clip(np.asarray(limits)[:, None, None] - g_before / n, 0, 1 / n)
  return np.sum(np.where(g, width * frac, 0), axis=2).T


def vectorised_chunk(exits, a, b, genuine, scores, masks, weights, rule, fmrs, error, limits):
  """Areas of a chunk of variants -> (ERC [B, F], EDC [B, K])."""
  f = fuse(exits, masks, rule, weights)
  pq = np.minimum(f[:, a], f[:, b])
  order = np.argsort(pq, axis=1, kind="stable")
  return erc_areas(order, scores, genuine, fmrs), edc_areas(order, pq, genuine, error, limits)


def loop_variant(exits, a, b, genuine, scores, mask, weights, rule, fmrs, error, limits):
  """One variant at a time: a [1, ...] call of the same numpy code."""
  return vectorised_chunk(
    exits, a, b, genuine, scores, mask[None], weights[None], rule, fmrs, error, limits
  )
