"""The import rule of docs/layout.md, read from the source (ast over every module).

The subpackages follow the data path, images -> data -> models -> scoring -> metrics
-> fusion -> adaptive -> evaluation -> report -> cli, with `convert` beside models and
`configs` (data) and the top-level helpers (`backend`, `fileio`) below them all: a
module imports only from its own subpackage or an earlier one, and no `_private` name
crosses a subpackage. Imports inside functions count as well. A `__main__` module is a
program entry point (like the CLI) and may import any stage.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
# stage of each part of exfiqa_jax: a module may import from stages <= its own
STAGES = {
  "backend": 0,
  "fileio": 0,
  "configs": 0,  # data: get_config() files and the override parser
  "data": 1,
  "models": 2,
  "convert": 2,  # beside models
  "scoring": 3,
  "metrics": 4,
  "fusion": 5,
  "adaptive": 6,
  "evaluation": 7,
  "report": 8,
  "cli": 9,
}
TOP = 10  # exfiqa_jax/__init__.py, the everyday API: may import any stage


def _modules():
  """(part, module name, path) of every module: part is its subpackage."""
  for path in sorted((ROOT / "exfiqa_jax").rglob("*.py")):
    rel = path.relative_to(ROOT / "exfiqa_jax").with_suffix("").parts
    yield rel[0], "exfiqa_jax." + ".".join(rel), path
  for top in ("convert", "configs"):
    for path in sorted((ROOT / top).rglob("*.py")):
      rel = path.relative_to(ROOT / top).with_suffix("").parts
      yield top, f"exfiqa_jax.{top}." + ".".join(rel), path


def _imports(path: pathlib.Path, module: str):
  """(imported module, names or None, line) of every exfiqa_jax import in `path`."""
  package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name.startswith("exfiqa_jax"):
          yield a.name, None, node.lineno
    elif isinstance(node, ast.ImportFrom):
      name = node.module or ""
      if node.level:  # relative: resolve against the package
        base = package.split(".")[: len(package.split(".")) - node.level + 1]
        name = ".".join(base + ([name] if name else []))
      if name.startswith("exfiqa_jax"):
        yield name, [a.name for a in node.names], node.lineno


def _private_uses(path: pathlib.Path, module: str):
  """(bound name, attribute, line) of every `name._private` where `name` was bound by an
  exfiqa_jax import (a module or an object of one), with the part it came from."""
  tree = ast.parse(path.read_text(), str(path))
  bound = {}
  for target, names, _ in _imports(path, module):
    for n in names or ():
      bound[n] = f"{target}.{n}"
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        if a.name.startswith("exfiqa_jax") and a.asname:
          bound[a.asname] = a.name
  for node in ast.walk(tree):
    if (
      isinstance(node, ast.Attribute)
      and isinstance(node.value, ast.Name)
      and node.value.id in bound
      and node.attr.startswith("_")
      and not node.attr.startswith("__")
    ):
      yield bound[node.value.id], node.attr, node.lineno


def _part(module: str) -> str | None:
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else None


def _stage(part: str | None) -> int:
  return STAGES.get(part, TOP) if part not in (None, "__init__") else TOP


def test_every_module_imports_only_earlier_stages_and_no_private_names():
  bad, seen = [], 0
  for part, module, path in _modules():
    seen += 1
    own = TOP if module.endswith(".__main__") else _stage(part)  # `python -m` entry points
    for target, names, line in _imports(path, module):
      where = f"{path.relative_to(ROOT)}:{line}"
      tpart = _part(target)
      if tpart is None and names:  # `from exfiqa_jax import x`: x is a subpackage or API name
        subs = [n for n in names if n in STAGES]
        stage = max([_stage(n) for n in subs], default=TOP)
        if subs and stage > own:
          bad.append(f"{where}: {part} (stage {own}) imports {subs} (stage {stage})")
        if not subs and part != "__init__" and own != STAGES["cli"]:
          bad.append(f"{where}: {part} imports the top-level API {names} (import the stage)")
        continue
      if _stage(tpart) > own:
        bad.append(f"{where}: {part} (stage {own}) imports {target} (stage {_stage(tpart)})")
      if tpart != part:
        private = [n for n in names or () if n.startswith("_")]
        private += [p for p in target.split(".")[2:] if p.startswith("_") and p != "__init__"]
        if private:
          bad.append(f"{where}: {part} imports private {private} from {target}")
    for source, attr, line in _private_uses(path, module):
      if _part(source) != part:
        bad.append(f"{path.relative_to(ROOT)}:{line}: {part} uses private {source}.{attr}")
  assert seen > 100, seen  # the walk found the package
  assert not bad, "\n".join(bad)


def test_the_rule_catches_a_late_import(tmp_path):
  """The walk resolves relative imports and sees imports inside functions."""
  f = tmp_path / "m.py"
  f.write_text("def f():\n  from ..report import plots\n  from exfiqa_jax.metrics.erc import _x\n")
  found = list(_imports(f, "exfiqa_jax.evaluation.m"))
  assert found == [
    ("exfiqa_jax.report", ["plots"], 2),
    ("exfiqa_jax.metrics.erc", ["_x"], 3),
  ]
  assert _stage(_part(found[0][0])) > STAGES["evaluation"]
  f.write_text("from exfiqa_jax.fusion import engine\nx = engine._plan\ny = engine.plan\n")
  assert list(_private_uses(f, "exfiqa_jax.evaluation.m")) == [
    ("exfiqa_jax.fusion.engine", "_plan", 2)
  ]
