"""Orbax failures are one line in the process (issue 27): a damaged checkpoint or a full
disk while one is written gives one stderr line, not the tracebacks orbax's other
threads and coroutines print afterwards (RuntimeError: Event loop is closed, ...)."""

import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

import exfiqa_jax
from tests.helpers import HAS_TORCH, TORCH_REASON
from tests.score_helpers import TINY, faces, random_variables

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "PYTHONPATH": ROOT, "JAX_COMPILATION_CACHE_DIR": ""}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp("orbax")
  exfiqa_jax.save(str(root / "ckpt"), TINY, *random_variables(seed=7)[1:])
  (root / "imgs").mkdir()
  Image.fromarray(faces(1, 5)[0]).save(root / "imgs" / "a.png")
  return root


def _run(*args, fsize: int | None = None):
  """`exfiqa ARGS` in a new process; fsize: its file-size limit (RLIMIT_FSIZE) in bytes."""
  limit = f"import resource; resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize}, {fsize}))"
  code = f"import sys; {limit if fsize else 'pass'}; from exfiqa_jax.cli import main; "
  code += "sys.exit(main(sys.argv[1:]))"
  return subprocess.run(
    [sys.executable, "-c", code, *map(str, args)],
    env=ENV,
    capture_output=True,
    text=True,
    timeout=600,
  )


def test_damaged_checkpoint_is_one_stderr_line_in_a_real_process(root, tmp_path):
  shutil.copytree(root / "ckpt", tmp_path / "ckpt")
  data = tmp_path / "ckpt" / "variables" / "ocdbt.process_0" / "d"
  for name in os.listdir(data):  # every data file cut short: several reads fail at once
    os.truncate(data / name, 100)
  for quiet in ([], ["--quiet"]):
    out = tmp_path / "s.npz"
    r = _run(
      "score", "--checkpoint", tmp_path / "ckpt", "--images", root / "imgs", "--out", out, *quiet
    )
    assert r.returncode == 2, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-5000:]
    assert lines[0].startswith("exfiqa score: error: ") and "damaged or incomplete" in lines[0]
    assert not out.exists()


@pytest.mark.skipif(not HAS_TORCH, reason=TORCH_REASON)
def test_full_disk_while_converting_is_one_stderr_line(root, tmp_path):
  """A file-size limit (RLIMIT_FSIZE: the write fails with EFBIG, the same path as ENOSPC
  on a full disk; no root needed) while orbax writes the converted checkpoint."""
  assert _run("export", root / "ckpt", tmp_path / "m.pt", "--quiet").returncode == 0
  r = _run("convert", tmp_path / "m.pt", tmp_path / "c", "--quiet", fsize=2000)
  assert r.returncode == 2, r.stderr[-3000:]
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1, r.stderr[-5000:]
  assert "the checkpoint could not be written" in lines[0]
  assert sorted(os.listdir(tmp_path)) == ["m.pt", "m.pt.json"]


def test_asyncio_logs_of_orbax_tasks_are_dropped_and_others_kept(caplog):
  """A damaged checkpoint's read tasks that nobody awaits any more are logged by asyncio
  ("Task exception was never retrieved") when collected, at exit too: a CI run printed
  that traceback (328 lines) after the one-line error. Such a record whose traceback is
  orbax's is dropped by the logger's filter; an asyncio error of other code still shows."""
  import logging

  import exfiqa_jax.models.checkpoint  # noqa: F401  (installs the filters)

  def code(path: str, text: str) -> dict:  # functions whose frames are in `path`
    ns: dict = {}
    exec(compile(text, path, "exec"), ns)
    return ns

  boom = code("/x/orbax/fake.py", "def boom():\n  raise ValueError('OUT_OF_RANGE')\n")["boom"]
  other = code("/x/user/code.py", "def other():\n  return int('x')\n")["other"]
  catch = code(
    "/x/user/catch.py", "def catch(f):\n  try:\n    f()\n  except ValueError as e:\n    return e\n"
  )["catch"]
  errors = [catch(boom), catch(other)]  # tracebacks from catch's frame on (not this file's)
  emit = code(  # the record's pathname is its caller's: asyncio's, not this file's
    "/x/asyncio_like/base_events.py",
    "def emit(log, e):\n"
    "  log.error('Task exception was never retrieved', exc_info=(type(e), e, e.__traceback__))\n",
  )["emit"]
  with caplog.at_level(logging.ERROR, logger="asyncio"):
    for e in errors:
      emit(logging.getLogger("asyncio"), e)
  assert [r.exc_info[1] for r in caplog.records] == [errors[1]]
