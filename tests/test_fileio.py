import os

import pytest

from exfiqa_jax.fileio import atomic_path, write_text


def test_write_is_atomic_and_leaves_nothing_on_failure(tmp_path):
  target = tmp_path / "out.txt"
  write_text(str(target), "first")
  with pytest.raises(RuntimeError, match="boom"):
    with atomic_path(str(target)) as tmp:
      with open(tmp, "w") as f:
        f.write("half")
      raise RuntimeError("boom")
  assert target.read_text() == "first"
  assert os.listdir(tmp_path) == ["out.txt"]


def test_directory_refuses_existing_without_force(tmp_path):
  target = tmp_path / "ckpt"
  with atomic_path(str(target), directory=True) as tmp:
    open(os.path.join(tmp, "a"), "w").close()
  assert os.listdir(target) == ["a"]
  with pytest.raises(FileExistsError, match=r"ckpt exists; pass --force"):
    with atomic_path(str(target), force=False, directory=True):
      pass
  with atomic_path(str(target), directory=True) as tmp:
    open(os.path.join(tmp, "b"), "w").close()
  assert os.listdir(target) == ["b"] and os.listdir(tmp_path) == ["ckpt"]
