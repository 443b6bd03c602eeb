"""The output policy, atomic writes (permissions, fsync, clean-up) and folder locks."""

import os
import re
import socket
import subprocess
import sys
import textwrap

import pytest

from exfiqa_jax.fileio import (
  MARKER,
  FolderBusy,
  FolderLock,
  atomic_path,
  check_output,
  remove_stale,
  write_text,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
  """Issue 14: a folder output is never replaced by default, and with force only
  when exfiqa wrote it (its marker) as the same kind of output."""
  target = tmp_path / "ckpt"
  with atomic_path(str(target), directory=True, kind="checkpoint") as tmp:
    open(os.path.join(tmp, "a"), "w").close()
  assert sorted(os.listdir(target)) == [MARKER, "a"]
  with pytest.raises(FileExistsError, match=r"ckpt exists; pass --force"):
    with atomic_path(str(target), directory=True, kind="checkpoint"):
      pass
  with pytest.raises(FileExistsError, match=r"ckpt exists and is not a attention written"):
    with atomic_path(str(target), directory=True, force=True, kind="attention"):
      pass
  with atomic_path(str(target), directory=True, force=True, kind="checkpoint") as tmp:
    open(os.path.join(tmp, "b"), "w").close()
  assert sorted(os.listdir(target)) == [MARKER, "b"] and os.listdir(tmp_path) == ["ckpt"]


def test_force_never_replaces_an_unrelated_folder(tmp_path):
  mine = tmp_path / "photos"
  mine.mkdir()
  (mine / "face.png").write_bytes(b"precious")
  for force in (False, True):
    with pytest.raises(FileExistsError, match="photos"):
      with atomic_path(str(mine), directory=True, force=force):
        pass
  assert (mine / "face.png").read_bytes() == b"precious"
  (tmp_path / "empty").mkdir()  # an empty folder holds nothing to lose
  with atomic_path(str(tmp_path / "empty"), directory=True, force=True) as tmp:
    open(os.path.join(tmp, "x"), "w").close()
  with pytest.raises(FileExistsError, match=r"--out .*photos is a folder; this output is a file"):
    check_output(str(mine), force=True, option="--out")
  with pytest.raises(FileExistsError, match=r"is a file; this output is a folder"):
    check_output(str(mine / "face.png"), force=True, directory=True)


def test_new_files_and_folders_honour_the_umask(tmp_path):
  old = os.umask(0o022)
  try:
    write_text(str(tmp_path / "report.md"), "x")
    with atomic_path(str(tmp_path / "out"), directory=True):
      pass
    os.umask(0o077)
    write_text(str(tmp_path / "private.md"), "x")
  finally:
    os.umask(old)
  assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
  assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
  assert (tmp_path / "private.md").stat().st_mode & 0o777 == 0o600


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.run(
    [sys.executable, "-c", textwrap.dedent(code), *args],
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_temporaries_of_a_killed_writer_are_removed_at_the_next_write(tmp_path):
  killed = _run(
    """
    import os, signal, sys
    from exfiqa_jax.fileio import atomic_path
    open_writers = []
    for directory, name in ((False, "scores.npz"), (True, "ckpt")):
      open_writers.append(atomic_path(os.path.join(sys.argv[1], name), directory=directory))
      tmp = open_writers[-1].__enter__()
      if directory:
        os.mkdir(tmp + ".orbax-checkpoint-tmp-0")  # what a writer may put beside it
    os.kill(os.getpid(), signal.SIGKILL)
    """,
    str(tmp_path),
  )
  assert killed.returncode == -9
  left = sorted(os.listdir(tmp_path))
  assert len(left) == 3 and all(n.startswith((".scores.npz.tmp-", ".ckpt.tmp-")) for n in left)
  (tmp_path / ".other.tmp-elsewhere-1-0123abcd").write_text("another machine's")
  host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())
  live = tmp_path / f".x.tmp-{host}-{os.getpid()}-0123abcd"  # this process: alive
  live.write_text("in flight")
  write_text(str(tmp_path / "scores.npz"), "whole")  # cleans its own name's leftovers
  assert sorted(n for n in os.listdir(tmp_path) if "scores" in n) == ["scores.npz"]
  assert len(remove_stale(str(tmp_path))) == 2  # the folder and the writer's sibling
  assert sorted(os.listdir(tmp_path)) == [
    ".other.tmp-elsewhere-1-0123abcd",
    live.name,
    "scores.npz",
  ]


def test_a_locked_folder_is_refused_to_a_second_process(tmp_path):
  lock = FolderLock(str(tmp_path / "run"), "a scoring run")
  lock.acquire()
  try:
    other = _run(
      """
      import sys
      from exfiqa_jax.fileio import FolderBusy, FolderLock
      try:
        FolderLock(sys.argv[1], "a scoring run").acquire()
      except FolderBusy as e:
        print(e)
      """,
      str(tmp_path / "run"),
    )
    assert "another exfiqa process is using this folder (a scoring run)" in other.stdout
    FolderLock(str(tmp_path / "run")).acquire()  # the same process: no-op
  finally:
    lock.release()
  again = _run(
    "import sys; from exfiqa_jax.fileio import FolderLock; FolderLock(sys.argv[1]).acquire()",
    str(tmp_path / "run"),
  )
  assert again.returncode == 0, again.stderr
  assert os.listdir(tmp_path / "run") == []  # no lock file
  assert issubclass(FolderBusy, RuntimeError)


def test_remove_late_removes_what_a_late_writer_recreates(tmp_path):
  """A writer thread still running after the failed operation recreates the temporary
  folder (as tensorstore's native writers do, parents included): `remove_late` removes
  it once it appears and returns after a quiet spell; with nothing there it returns
  after `quiet_s`."""
  import threading
  import time

  from exfiqa_jax.fileio import remove_late

  tmp = tmp_path / ".c.tmp-host-1-0123abcd"
  late = tmp_path / ".c.tmp-host-1-0123abcd.orbax-checkpoint-tmp" / "variables"

  def writer():
    time.sleep(0.1)
    late.mkdir(parents=True)
    (late / "d").write_bytes(b"x")

  thread = threading.Thread(target=writer)
  start = time.monotonic()
  thread.start()
  remove_late(str(tmp), quiet_s=0.3, limit_s=3.0)
  thread.join()
  assert os.listdir(tmp_path) == []
  assert 0.35 <= time.monotonic() - start < 3.0  # waited past the write, then a quiet spell
  start = time.monotonic()
  remove_late(str(tmp), quiet_s=0.2)
  assert 0.2 <= time.monotonic() - start < 1.0
