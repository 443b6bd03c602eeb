"""The sweep's row lists (saved_sweep.rows_of, analysis.variant_names) and their CSV and
JSON files against the literal construction: a dict of numpy scalars per row named by
analysis.variant_name, written cell by cell (report.tables)."""

import json

import numpy as np

from exfiqa_jax.evaluation.analysis import variant_name, variant_names
from exfiqa_jax.evaluation.saved_sweep import rows_of
from exfiqa_jax.report.tables import write_csv, write_json


def literal_rows(table, index, depth):
  rows = [{k: v[i] for k, v in table.items()} for i in index]
  for r in rows:
    r["variant"] = variant_name(int(r["subset"]), str(r["rule"]), str(r["norm"]), depth)
    if "weights" in r:
      r["weights"] = [round(float(x), 3) for x in r["weights"]]
  return rows


def sweep_table(v=300, depth=5, seed=0):
  rng = np.random.default_rng(seed)
  return {
    "subset": rng.integers(1, 1 << depth, v),
    "deepest": rng.integers(1, depth + 1, v),
    "rule": rng.choice(["mean", "weighted", "median", "min", "max"], v),
    "norm": rng.choice(["none", "rank", "zscore"], v),
    "erc_area@0.001": np.where(rng.random(v) < 0.2, np.nan, rng.random(v)).astype(np.float32),
    "edc_area@0.2": rng.random(v),  # float64
    "gflops": rng.integers(1, 13, v).astype(float),
  }


def test_variant_names_equal_variant_name_for_every_subset_rule_and_norm():
  depth = 5
  codes = np.repeat(np.arange(1, 1 << depth), 15)
  rules = np.tile(np.repeat(["mean", "weighted", "median", "min", "max"], 3), (1 << depth) - 1)
  norms = np.tile(["none", "rank", "minmax"], 5 * ((1 << depth) - 1))
  rows = zip(codes, rules, norms, strict=True)
  want = [variant_name(int(c), str(r), str(n), depth) for c, r, n in rows]
  assert variant_names(codes, rules, norms, depth) == want
  assert "exit 3" in want and "median(all) [rank]" in want and "max({1,4})" in want


def test_rows_and_their_files_equal_the_literal_rows(tmp_path):
  table = sweep_table()
  simplex = {**sweep_table(40, seed=1), "weights": np.random.default_rng(2).dirichlet(
    np.ones(5), 40).astype(np.float32)}  # fmt: skip
  for t, index in ((table, range(300)), (table, [5, 0, 299, 17]), (simplex, range(40))):
    want, got = literal_rows(t, index, 5), rows_of(t, index, 5)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
      assert list(g) == list(w)
      for k in w:  # the same values (NaN in the same places)
        assert g[k] == w[k] or (w[k] != w[k] and g[k] != g[k]), k
    write_csv(str(tmp_path / "want.csv"), want)
    write_csv(str(tmp_path / "got.csv"), got)
    assert (tmp_path / "got.csv").read_bytes() == (tmp_path / "want.csv").read_bytes()
    write_json(str(tmp_path / "want.json"), want)
    write_json(str(tmp_path / "got.json"), got)
    assert (tmp_path / "got.json").read_bytes() == (tmp_path / "want.json").read_bytes()
    assert json.loads((tmp_path / "got.json").read_text())[0]["variant"] == want[0]["variant"]
  assert rows_of(table, [], 5) == []


def test_the_table_csv_equals_the_rows_csv(tmp_path):
  from exfiqa_jax.report.sweep import write_table_csv

  table = sweep_table(500)
  table["rule"][:7] = ['we,"ird', "a\nb", "x", "mean", "min", "max", "median"]  # quoting
  table["flag"] = np.arange(500) % 3 == 0  # bools: written as cell writes them
  simplex = {**sweep_table(40, seed=1), "weights": np.random.default_rng(2).dirichlet(
    np.ones(5), 40).astype(np.float32)}  # fmt: skip
  for t in (table, simplex, {k: v[:0] for k, v in simplex.items()}):
    n = len(t["subset"])
    write_csv(str(tmp_path / "want.csv"), literal_rows(t, range(n), 5))
    names = write_table_csv(str(tmp_path / "got.csv"), t, 5)
    assert (tmp_path / "got.csv").read_bytes() == (tmp_path / "want.csv").read_bytes()
    assert names == [r["variant"] for r in literal_rows(t, range(n), 5)]
    if t is table:  # quoted as csv quotes, bools as cell writes them
      got = (tmp_path / "got.csv").read_bytes()
      assert b'"we,""ird"' in got and b'"a\nb"' in got and b",True," in got
