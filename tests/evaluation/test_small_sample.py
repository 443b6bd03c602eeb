"""The report says when an FMR threshold rests on fewer than about 10 impostors (issue 26):
with 150 impostors, FMR 0.01 is set by 1.5 of them, and rejecting 1% can flip it."""

from exfiqa_jax.evaluation.analysis import FEW_IMPOSTORS, resolution_warnings


def test_an_fmr_resolved_by_few_impostors_is_named():
  lines = resolution_warnings((1e-2, 1e-3), 150)
  assert lines[0] == (
    "ERC at FMR 0.01 rests on 1.5 impostor comparisons above its threshold (150 impostors; "
    "fewer than 10): its FNMR moves in small-sample steps when a few comparisons are rejected"
  )
  assert lines[1].startswith("ERC at FMR 0.001 is not resolvable: 150 impostor comparisons")
  assert len(lines) == 2


def test_enough_impostors_give_no_note():
  assert FEW_IMPOSTORS == 10
  assert resolution_warnings((1e-2,), 1000) == []  # 10 impostors above the threshold
  assert len(resolution_warnings((1e-2,), 999)) == 1  # 9.99
  assert resolution_warnings((1e-3, 1e-4), 10**6) == []
