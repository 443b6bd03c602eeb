"""Plain numpy/Python references for ERC and EDC, written from docs/protocol.md §3-5.

Deliberately slow and literal: loops over rates, candidate thresholds and curve
points, exact fractions for the FMR comparison. Used only by the tests.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def erc_reference(pq, scores, genuine, fmr):
  """-> (fnmr [20], area). Discard floor(i * P / 20) lowest pairs (stable order)."""
  pq, scores, genuine = (
    np.asarray(pq, np.float64),
    np.asarray(scores, np.float64),
    np.asarray(genuine, bool),
  )
  p = len(pq)
  order = np.argsort(pq, kind="stable")
  target = Fraction(str(fmr))
  fnmrs = []
  for i in range(20):
    keep = order[i * p // 20 :]
    imp = [scores[j] for j in keep if not genuine[j]]
    gen = [scores[j] for j in keep if genuine[j]]
    if not imp or not gen:
      fnmrs.append(np.nan)
      continue
    best_t, best_d = None, None
    for t in sorted(set(scores[keep])):  # ascending: the first minimiser is the smallest t
      d = abs(Fraction(sum(s >= t for s in imp), len(imp)) - target)
      if best_d is None or d < best_d:
        best_t, best_d = t, d
    fnmrs.append(sum(s <= best_t for s in gen) / len(gen))
  f = np.array(fnmrs)
  area = sum((f[i] + f[i + 1]) / 2 * 0.05 for i in range(19))
  return f, area


def edc_threshold(scores, genuine, fmr):
  scores, genuine = np.asarray(scores, np.float64), np.asarray(genuine, bool)
  return np.quantile(scores[~genuine], 1 - fmr)


def edc_reference(pq, scores, genuine, threshold, limits):
  """-> (points [(discard, error)], areas per limit, theoretical-best areas)."""
  pq, scores, genuine = (
    np.asarray(pq, np.float64),
    np.asarray(scores, np.float64),
    np.asarray(genuine, bool),
  )
  q, s = pq[genuine], scores[genuine]
  order = np.argsort(q, kind="stable")
  q, err = q[order], s[order] < threshold
  n = len(q)
  points = []
  for k in range(n):
    if k == 0 or q[k] != q[k - 1]:  # a new quality value: its whole group goes at once
      points.append((k / n, err[k:].sum() / (n - k)))
  points.append((1.0, 0.0))
  areas, best = [], []
  for limit in limits:
    area = 0.0
    for i in range(len(points) - 1):
      if points[i][0] >= limit:
        break
      area += points[i][1] * (min(points[i + 1][0], limit) - points[i][0])
    areas.append(area)
    e0 = points[0][1]
    best.append(e0**2 / 2 - (max(e0 - limit, 0.0) ** 2) / 2)
  return points, areas, best
