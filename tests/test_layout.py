"""The repository layout: top-level `convert/` and `configs/` installed inside the package."""

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _declared() -> tuple[list[str], dict[str, str]]:
  setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
  return setuptools["packages"], setuptools["package-dir"]


def test_every_package_folder_is_installed_and_no_generic_top_level_name():
  packages, package_dir = _declared()
  found = {
    "exfiqa_jax." + ".".join(p.parent.relative_to(ROOT / "exfiqa_jax").parts)
    for p in (ROOT / "exfiqa_jax").rglob("__init__.py")
    if p.parent != ROOT / "exfiqa_jax"
  } | {"exfiqa_jax"}
  for top in ("convert", "configs"):
    assert not (ROOT / "exfiqa_jax" / top).exists(), f"exfiqa_jax/{top} must live at the top level"
    assert package_dir[f"exfiqa_jax.{top}"] == top
    found |= {
      f"exfiqa_jax.{top}" + "".join("." + x for x in p.parent.relative_to(ROOT / top).parts)
      for p in (ROOT / top).rglob("__init__.py")
    }
  assert sorted(packages) == sorted(found)
  assert all(p == "exfiqa_jax" or p.startswith("exfiqa_jax.") for p in packages)


def test_the_mapped_packages_import_from_the_top_level_folders():
  import exfiqa_jax.configs
  import exfiqa_jax.convert

  assert pathlib.Path(exfiqa_jax.convert.__file__).parent.name == "convert"
  assert pathlib.Path(exfiqa_jax.configs.__file__).parent.name == "configs"
