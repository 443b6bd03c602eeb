"""Reports written as one unit: a command's page and its tables, figures and files are
written into a staging folder and swapped in together (`exfiqa_jax.fileio.output_set`),
with the page itself last, so a kill or a failure never leaves the files of two runs
side by side, and a `--force` run removes the previous run's files the new one lacks.

    summary = write_unit(out_dir, "report", lambda folder: write_report(folder, ...))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from exfiqa_jax.fileio import output_set

REPORT_HEAD = ("report.html", "summary.md")  # a job report's head, moved in last


def write_unit(
  out_dir: str,
  name: str,
  write: Callable[[str], object],
  last: Sequence[str] = REPORT_HEAD,
  kept: Sequence[str] = (),
  outside: dict[str, str] | None = None,
) -> str:
  """Calls write(folder), which writes the files of the unit `name` under `folder`
  (paths as under out_dir), then swaps them into out_dir as one unit, `last` (relative
  paths) at the end; returns the path of the last of `last` in out_dir (the page).

  kept: files already in out_dir (relative) that belong to the unit (a job's saved
  inputs); outside: staged relative path -> a destination outside out_dir."""
  with output_set(out_dir, name, last=tuple(last), kept=tuple(kept), outside=outside) as folder:
    write(folder)
  return os.path.join(out_dir, last[-1])
