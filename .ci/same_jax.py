"""Compares two `pip install --dry-run --report` files: the jax packages resolved for an
accelerator extra alone and together with the exfiqa-jax wheel must be the same versions.

    python .ci/same_jax.py "jax[cuda13]" alone.json with.json
"""

import json
import sys


def resolved(report: str) -> dict[str, str]:
  """Every package of a dry-run report, name -> version."""
  with open(report) as f:
    installs = json.load(f)["install"]
  return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in installs}


def jax_packages(versions: dict[str, str]) -> dict[str, str]:
  return {k: v for k, v in versions.items() if k.startswith(("jax", "libtpu"))}


def main(what: str, alone: str, with_wheel: str) -> int:
  with_all = resolved(with_wheel)
  a, w = jax_packages(resolved(alone)), jax_packages(with_all)
  if "jax" not in a:
    print(f"{what}: no jax in the resolution of {alone}", file=sys.stderr)
    return 1
  if "exfiqa-jax" not in with_all:
    print(f"{what}: the wheel is missing from the resolution of {with_wheel}", file=sys.stderr)
    return 1
  if a != w:
    print(f"{what}: alone {a}, with exfiqa-jax {w}", file=sys.stderr)
    return 1
  print(
    f"{what}: {', '.join(f'{k} {v}' for k, v in sorted(a.items()))}, with and without exfiqa-jax"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main(*sys.argv[1:]))
