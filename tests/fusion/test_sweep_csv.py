"""The column-wise CSV writer of the sweep report writes what report.tables.write_csv
writes, byte for byte."""

import numpy as np

from exfiqa_jax.evaluation.saved_sweep import rows_of
from exfiqa_jax.report.sweep import write_rows_csv
from exfiqa_jax.report.tables import write_csv


def test_column_csv_equals_the_cell_by_cell_writer(tmp_path):
  rng = np.random.default_rng(0)
  v = 50
  table = {
    "subset": np.arange(1, v + 1),
    "deepest": rng.integers(1, 13, v),
    "rule": np.array(["mean", "median", 'we,"ird'] * 20)[:v],
    "norm": np.full(v, "none"),
    "erc_area@0.001": np.where(rng.random(v) < 0.2, np.nan, rng.random(v)).astype(np.float32),
    "edc_area@0.2": rng.random(v),  # float64
    "gflops": rng.integers(1, 13, v).astype(float),
    "weights": rng.dirichlet(np.ones(12), v).astype(np.float32),
  }
  rows = rows_of(table, range(v), 12)
  rows[3]["extra"] = "only in one row: not a column"
  rows[4]["edc_area@0.2"] = 7  # an int in a float column: that column goes cell by cell
  for case in (rows, rows[:1], []):
    write_csv(str(tmp_path / "a.csv"), case)
    write_rows_csv(str(tmp_path / "b.csv"), case)
    got = (tmp_path / "b.csv").read_bytes()
    assert got == (tmp_path / "a.csv").read_bytes()
    if len(case) > 2:  # quoting, NaN and the int written as write_csv writes them
      assert b',"we,""ird",' in got and b",nan," in got and b",7," in got
