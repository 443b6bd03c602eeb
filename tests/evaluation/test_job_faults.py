"""A job's optional sections never abort it late (issue 27): an adaptive study its pairs
cannot support is skipped with a warning in summary.md naming the job option; a
sweep.select that is no metric is refused before any scoring, naming the option."""

import numpy as np
import pytest

from exfiqa_jax.evaluation.options import check_select
from exfiqa_jax.evaluation.run import adaptive_study, analyse_inputs
from exfiqa_jax.metrics.inputs import PairInputs
from exfiqa_jax.report.summary import write_report
from tests.adaptive.test_job_report import _inputs

METRICS = {"fmrs": (0.05,), "edc_fmr": 0.05, "edc_limits": (0.25,)}


def test_adaptive_section_with_shared_images_is_a_warning_not_an_abort(tmp_path):
  d = _inputs(pairs=60)
  d["a"] = np.zeros_like(d["a"])  # every pair shares image 0: no disjoint evaluation split
  z = PairInputs(**d)
  cfg = {"metrics": METRICS, "adaptive": {"policies": ("delta",), "stages": (2, 4)}}
  with pytest.raises(ValueError, match="adaptive.fraction"):  # alone: raises, names the option
    adaptive_study(z, cfg)
  an = analyse_inputs(z, cfg)
  assert adaptive_study(z, cfg, an.select, an.warnings) is None
  warning = an.warnings[-1]
  assert warning.startswith("adaptive early exit skipped (job option `adaptive`): ")
  assert "the job option adaptive.fraction" in warning and "--fraction" not in warning
  summary = write_report(str(tmp_path), "# job", [("bench", "self", an)], cfg)
  text = open(summary).read()
  assert f"**Warning:** {warning}" in text and "Adaptive early exit:" not in text


def test_sweep_select_checked_before_scoring():
  check_select({"metrics": METRICS, "sweep": {"select": "edc_area@0.25"}}, "job.py")
  check_select({"metrics": METRICS, "sweep": {"select": "erc_area@0.05"}}, "job.py")
  check_select({"metrics": METRICS}, "job.py")
  with pytest.raises(ValueError, match=r"job.py: sweep.select 'edc_area@0.3' is not a metric of"):
    check_select({"metrics": METRICS, "sweep": {"select": "edc_area@0.3"}}, "job.py")
