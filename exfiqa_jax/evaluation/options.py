"""The options of a job and of `exfiqa sweep`: typed sections, each default held once.

A section (scoring, metrics, sweep, weights, adaptive) is a table of `Option`s: its
default, its check and what the check wants. `exfiqa evaluate` (a job config's
sections) and `exfiqa sweep` (KEY=VALUE overrides) check with the same table, so
they accept and refuse the same values, in one line naming the key:

    check_options({"metrics": {"fmrs": (1,)}}, "job.py")
    # TypeError: job.py: metrics.fmrs must be a non-empty list of FMRs in (0, 1), ...

Adding an option is one line in its section (a default, a check, what it wants).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from exfiqa_jax.adaptive.policy import FRACTION, POLICIES, SEED
from exfiqa_jax.fusion.rules import NORMS, RULES
from exfiqa_jax.metrics.pairset import METRIC_DEFAULTS


@dataclasses.dataclass(frozen=True)
class Option:
  default: Any  # None: the stage chooses (e.g. the first EDC area for sweep.select)
  check: Callable[[Any], bool]  # True when a given value is acceptable
  wants: str  # what `check` accepts, for the error message


@dataclasses.dataclass(frozen=True)
class Section:
  name: str
  options: Mapping[str, Option]

  def defaults(self) -> dict[str, Any]:
    return {k: o.default for k, o in self.options.items()}

  def resolve(self, values: Mapping[str, Any] | None) -> dict[str, Any]:
    """The defaults with `values` on top (values already checked)."""
    return {**self.defaults(), **(values or {})}

  def check(self, values: Any, where: str) -> None:
    """Raises naming `where` and the key: not a dict (TypeError), an unknown key
    (KeyError), a value of a wrong type or range (TypeError)."""
    if not isinstance(values, dict):
      raise TypeError(f"{where}: {self.name} must be a dict of options; got {values!r}")
    for key, value in values.items():
      if key not in self.options:
        raise KeyError(f"{where}: unknown option {self.name}.{key}; known: {sorted(self.options)}")
      o = self.options[key]
      if not o.check(value):
        raise TypeError(f"{where}: {self.name}.{key} must be {o.wants}; got {value!r}")


def _positive_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _integer(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _rate(v) -> bool:
  return _number(v) and 0 < v < 1


def _names(known) -> Callable[[Any], bool]:
  return _seq(lambda x: x in known)


MAX_METRIC_VALUES = 64  # FMRs, EDC limits: each is a column of every variant of a sweep


def _seq(item, most: int | None = None) -> Callable[[Any], bool]:
  def check(v) -> bool:
    ok = isinstance(v, (list, tuple)) and len(v) > 0 and (most is None or len(v) <= most)
    return ok and all(item(x) for x in v)

  return check


def _knobs(v) -> bool:
  return isinstance(v, dict) and all(k in POLICIES and _seq(_number)(x) for k, x in v.items())


def _names_wanted(known) -> str:
  return f"a non-empty list of names from {tuple(known)}"


POSITIVE_INT = "a positive integer"
SECTIONS: dict[str, Section] = {
  s.name: s
  for s in (
    Section(
      "scoring",
      {
        "batch_size": Option(32, _positive_int, POSITIVE_INT),
        "dtype": Option(
          "float32", lambda v: v in ("float32", "bfloat16"), "'float32' or 'bfloat16'"
        ),
        "channel_order": Option(
          "rgb",
          lambda v: v in ("rgb", "bgr"),
          "'rgb' (the true-RGB image) or 'bgr': what ViT-FIQA is fed",
        ),
      },
    ),
    Section(
      "metrics",
      {
        "fmrs": Option(
          METRIC_DEFAULTS["fmrs"],
          _seq(_rate, MAX_METRIC_VALUES),
          f"a non-empty list of FMRs in (0, 1), at most {MAX_METRIC_VALUES}, e.g. (1e-3, 1e-4)",
        ),
        "edc_fmr": Option(METRIC_DEFAULTS["edc_fmr"], _rate, "an FMR in (0, 1)"),
        "edc_limits": Option(
          METRIC_DEFAULTS["edc_limits"],
          _seq(lambda v: _number(v) and 0 < v <= 1, MAX_METRIC_VALUES),
          f"a non-empty list of discard limits in (0, 1], at most {MAX_METRIC_VALUES}",
        ),
        "template_quality": Option(
          "min", lambda v: v in ("min", "mean"), "'min' (upstream IJB-C) or 'mean' over a template"
        ),
      },
    ),
    Section(
      "sweep",
      {
        "rules": Option(RULES, _names(RULES), _names_wanted(RULES)),
        "norms": Option(("none",), _names(NORMS), _names_wanted(NORMS)),
        "top_k": Option(3, _positive_int, POSITIVE_INT),
        "memory_mb": Option(1024, lambda v: _number(v) and v > 0, "a positive number of MiB"),
        "select": Option(
          None,
          lambda v: v is None or isinstance(v, str),
          "a metric column name such as 'edc_area@0.2'",
        ),
      },
    ),
    Section(
      "weights",
      {
        "powers": Option((0.0, 0.5, 1.0, 2.0, 4.0), _seq(_number), "a non-empty list of numbers"),
        "simplex": Option(64, _positive_int, POSITIVE_INT),
        "learn_steps": Option(200, _positive_int, POSITIVE_INT),
        "seed": Option(0, _integer, "an integer"),
      },
    ),
    Section(
      "report",
      {
        "exits": Option(
          (),
          lambda v: isinstance(v, (list, tuple)) and all(_positive_int(x) for x in v),
          "a list of exits (1-based) to plot, e.g. (3, 6)",
        ),
      },
    ),
    Section(
      "adaptive",
      {
        "policies": Option(POLICIES, _names(POLICIES), _names_wanted(POLICIES)),
        "stages": Option(
          None,
          _seq(_positive_int),
          "a non-empty list of exits ending at the depth, e.g. (3, 6, 9, 12)",
        ),
        "fraction": Option(FRACTION, _rate, "the fraction of pairs to calibrate on, in (0, 1)"),
        "seed": Option(SEED, _integer, "an integer"),
        "knobs": Option(
          None, _knobs, f"a dict {{policy: (knob, ...)}} with policies from {POLICIES}"
        ),
      },
    ),
  )
}


def check_sweep_size(cfg: Mapping[str, Any], depth: int, where: str) -> None:
  """The job's sweep (every exit subset x sweep.rules x sweep.norms) within the stated
  bound (fusion.subsets.MAX_VARIANTS), before any scoring: one line naming `where`."""
  from exfiqa_jax.fusion.subsets import check_variants

  sweep = options(cfg, "sweep")
  check_variants(depth, len(sweep["rules"]), len(sweep["norms"]), f"{where}: sweep")


def check_select(cfg: Mapping[str, Any], where: str) -> None:
  """sweep.select against the metric columns the job's metrics options give (ERC areas
  at each FMR, EDC areas and best discards at each limit), before any scoring (it was
  refused after scoring): ValueError naming `where` and the option."""
  import numpy as np

  select = options(cfg, "sweep")["select"]
  if select is None:
    return
  m = options(cfg, "metrics")
  cols = {f"erc_area@{float(f):g}" for f in m["fmrs"]}
  for limit in m["edc_limits"]:
    for x in (float(limit), np.float32(limit)):  # as the sweep table names them
      cols |= {f"edc_area@{x:g}", f"edc_best@{x:g}"}
  if select not in cols:
    raise ValueError(
      f"{where}: sweep.select {select!r} is not a metric of this job; one of {sorted(cols)}"
    )


def check_options(cfg: Mapping[str, Any], where: str, sections=tuple(SECTIONS)) -> None:
  """Raises naming `where` and the key: an option of `sections` of a wrong type or
  value (e.g. `sweep.rules=mean`, a bare string, or `scoring.batch_size=abc`), or an
  unknown one."""
  for name in sections:
    SECTIONS[name].check(cfg.get(name, {}), where)


def options(cfg: Mapping[str, Any], section: str) -> dict[str, Any]:
  """Section `section` of a checked config with its defaults filled in."""
  return SECTIONS[section].resolve(cfg.get(section))


def defaults(*sections: str) -> dict[str, dict[str, Any]]:
  """{section: its defaults}, e.g. the base that `exfiqa sweep` overrides apply to."""
  return {name: SECTIONS[name].defaults() for name in sections}
