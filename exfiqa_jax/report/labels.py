"""Metric column keys (`erc_area@0.001`, `halve@0.01`, ...) as words for axes and headers."""

from __future__ import annotations

_WORDS = {
  "erc_area": "ERC area at FMR = {v}",
  "edc_area": "EDC pAUC to discard {v}",
  "edc_best": "theoretical best EDC pAUC to discard {v}",
  "fnmr": "FNMR at FMR = {v}, none rejected",
  "fnmr_1pct": "FNMR at FMR = {v}, lowest 1% rejected",
  "fnmr_5pct": "FNMR at FMR = {v}, lowest 5% rejected",
  "halve": "fraction rejected to halve the FNMR at FMR = {v}",
}
_SHORT = {
  "erc_area": "ERC@{v}",
  "edc_area": "pAUC@{v}",
  "edc_best": "best pAUC@{v}",
  "fnmr": "FNMR@{v}",
  "fnmr_1pct": "FNMR@{v}, 1% rej.",
  "fnmr_5pct": "FNMR@{v}, 5% rej.",
  "halve": "rej. to halve FNMR@{v}",
}


def metric_label(key: str, short: bool = False) -> str:
  """`edc_area@0.2` -> "EDC pAUC to discard 0.2" (short: "pAUC@0.2"); other keys as given."""
  name, _, value = key.partition("@")
  words = (_SHORT if short else _WORDS).get(name)
  return words.format(v=value) if words and value else key


def mark_label(name: str, variant: str) -> str:
  """A marked assessor's legend entry: its role and the variant it is (`best subset:
  mean({3,6})`), or the name alone where the two say the same (`exit 6`)."""
  return name if name.startswith("best") or name == variant else f"{name}: {variant}"
