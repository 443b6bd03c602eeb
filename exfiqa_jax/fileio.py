"""File output for every command: the output policy, atomic writes, folder locks.

Output policy (one rule for every command, `check_output`): an existing output
is kept unless `force`; with `force` a file output is replaced, and a folder
output only when it is empty or its marker file (`.exfiqa-output.json`, written
by `atomic_path(directory=True)`) shows that exfiqa wrote it as the same kind of
output. An unrelated folder is never deleted, with or without `force`.

Atomic writes (`atomic_path`): the output is written under a temporary sibling
`.NAME.tmp-<host>-<pid>-<random>`, fsynced, renamed over NAME, and the parent
folder fsynced. New files get mode 0666 & ~umask (folders 0777 & ~umask), as
`open()` and `mkdir` would. On failure the temporary is removed; a temporary
left by a process that died (same host, pid gone: a kill, a power cut) is
removed by the next write of the same output (`remove_stale`).

Small JSON inputs (`read_json`): one bounded reader for every JSON file a command
reads (policies, checkpoint configs, export settings): a regular file of at most a
stated size, opened without blocking; anything else is a one-line ValueError.

Locks (`FolderLock`): an exclusive `flock` on a folder itself (no lock file), so
that two processes never write one run folder or one dataset at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

MARKER = ".exfiqa-output.json"
_HOST = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"
_TAG = re.compile(r"\.(?:tmp|old)-([A-Za-z0-9_.]+)-(\d+)-[0-9a-f]{8}")


JSON_MAX_BYTES = 16 << 20  # the bound of read_json unless a caller states its own


class JSONFileError(ValueError):
  """A JSON input `read_json` refuses: `str()` is the one-line message naming the file;
  `problem` the cause alone (e.g. "over 1 MiB (5,000,000 bytes)", "Expecting value: ...")
  and `kind` the decoder's error type for a malformed document (else None)."""

  def __init__(self, path: str, what: str, problem: str, kind: str | None = None):
    super().__init__(f"{path}: not a {what} ({kind or problem})")
    self.path, self.problem, self.kind = path, problem, kind


def _size(n: int) -> str:
  return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n:,} bytes"


def read_json(path: str, what: str, max_bytes: int = JSON_MAX_BYTES) -> Any:
  """The JSON document of the file `path` (`what` it should be, for the message).

  Bounded: only a regular file (a symlink to one is followed) of at most `max_bytes`
  is read; a FIFO, a device (`/dev/zero`), a folder or a larger file is refused by
  its `stat` before it is opened, and it is opened with O_NONBLOCK and checked again
  (a file swapped in between never blocks or streams). At most max_bytes + 1 bytes
  are read. FileNotFoundError for a missing file; JSONFileError (a ValueError, one
  line naming the file) for anything else, invalid UTF-8 or JSON and nesting too
  deep included.
  """

  def check(st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
      raise JSONFileError(path, what, f"not a regular file: {_file_type(st.st_mode)}")
    if st.st_size > max_bytes:
      raise JSONFileError(path, what, f"over {_size(max_bytes)} ({st.st_size:,} bytes)")

  try:
    check(os.stat(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
  except FileNotFoundError:
    raise FileNotFoundError(f"{path}: no such {what}") from None
  except OSError as e:
    raise JSONFileError(path, what, e.strerror or type(e).__name__) from None
  with os.fdopen(fd, "rb") as f:
    check(os.fstat(f.fileno()))
    data = f.read(max_bytes + 1)
  if len(data) > max_bytes:
    raise JSONFileError(path, what, f"over {_size(max_bytes)}")
  try:
    return json.loads(data.decode("utf-8"))
  except (UnicodeDecodeError, ValueError, RecursionError) as e:
    msg = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    raise JSONFileError(path, what, msg, type(e).__name__) from None


def _file_type(mode: int) -> str:
  for test, name in (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISSOCK, "a socket"),
  ):
    if test(mode):
      return name
  return "not a plain file"


def _tag(kind: str) -> str:
  return f".{kind}-{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def _marker_kind(path: str) -> str | None:
  try:
    return str(read_json(os.path.join(path, MARKER), "output marker", 1 << 16).get("kind"))
  except (OSError, ValueError, AttributeError):
    return None


def check_output(
  path: str, *, force: bool, directory: bool = False, kind: str = "output", option: str = ""
) -> None:
  """Raises FileExistsError unless `path` may be written (the policy above).

  kind: the kind of folder output (e.g. "checkpoint"); option: the command-line
  option naming `path`, for the messages.
  """
  name = f"{option} {path}" if option else path
  if not os.path.lexists(path):
    return
  if directory and not os.path.isdir(path):
    raise FileExistsError(f"{name} is a file; this output is a folder")
  if not directory and os.path.isdir(path):
    raise FileExistsError(f"{name} is a folder; this output is a file (give a file path)")
  if not force:
    raise FileExistsError(f"{name} exists; pass --force to overwrite it")
  if directory and os.listdir(path) and _marker_kind(path) != kind:
    raise FileExistsError(
      f"{name} exists and is not a {kind} written by exfiqa (no {MARKER} marker): "
      "--force replaces only what exfiqa wrote, so it was left as it is; "
      "remove it yourself or choose another path"
    )


def _alive(host: str, pid: int) -> bool:
  if host != _HOST:
    return True  # another machine's: cannot tell, keep it
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _remove(path: str) -> None:
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  else:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


def remove_late(tmp: str, quiet_s: float = 0.3, limit_s: float = 3.0) -> None:
  """After a failed write to the temporary `tmp` (already removed by `atomic_path`):
  removes what reappears at `tmp*` until nothing has for `quiet_s` seconds (at most
  `limit_s`). A library's native writer threads (tensorstore's, under orbax) may still
  finish writes the failed operation started, and they create the parent folders of
  what they write: a converted checkpoint on a full disk left its orbax folder behind
  once in a CI run."""
  start = last = time.monotonic()
  while (now := time.monotonic()) - last < quiet_s and now - start < limit_s:
    for p in glob.glob(glob.escape(tmp) + "*"):
      _remove(p)
      last = time.monotonic()
    time.sleep(0.02)


def remove_stale(folder: str, name: str = "*") -> list[str]:
  """Removes the temporaries of `name` (default: any) in `folder` whose writer
  died; returns their paths. Temporaries of live processes are kept."""
  pattern = os.path.join(glob.escape(folder), f".{name if name == '*' else glob.escape(name)}.*-*")
  removed = []
  for p in glob.glob(pattern):
    m = _TAG.search(os.path.basename(p))
    if m and not _alive(m.group(1), int(m.group(2))):
      _remove(p)
      removed.append(p)
  return removed


def fsync_tree(path: str) -> None:
  """fsync a file, or every file and folder under a folder."""
  if os.path.isdir(path):
    for root, dirs, files in os.walk(path):
      for f in files:
        fsync_tree(os.path.join(root, f))
      fsync_dir(root)
    return
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def fsync_dir(path: str) -> None:
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  except OSError as e:  # some file systems cannot sync a folder
    if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
      raise
  finally:
    os.close(fd)


@contextlib.contextmanager
def atomic_path(
  path: str,
  *,
  force: bool | None = None,
  directory: bool = False,
  kind: str = "output",
  option: str = "",
) -> Iterator[str]:
  """Yields a temporary sibling of `path` to write; moves it to `path` on success.

  force: may an existing `path` be replaced (`check_output`); default True for a
  file (a part of an output its command already claimed) and False for a folder.
  A folder output gets the marker of `kind`. On any exception the temporary is
  removed and `path` is left as it was.
  """
  path = os.path.abspath(path)
  force = (not directory) if force is None else force
  check_output(path, force=force, directory=directory, kind=kind, option=option)
  parent, base = os.path.split(path)
  os.makedirs(parent, exist_ok=True)
  remove_stale(parent, base)
  tmp = os.path.join(parent, f".{base}{_tag('tmp')}")
  if directory:
    os.mkdir(tmp, 0o777)
  else:
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
  try:
    yield tmp
    if directory:
      os.makedirs(tmp, exist_ok=True)  # a writer may have replaced the folder
      with open(os.path.join(tmp, MARKER), "w", encoding="utf-8") as f:
        json.dump({"kind": kind, "written_by": "exfiqa"}, f)
    fsync_tree(tmp)
    check_output(path, force=force, directory=directory, kind=kind, option=option)
    if directory and os.path.isdir(path):
      old = os.path.join(parent, f".{base}{_tag('old')}")
      os.rename(path, old)
      os.rename(tmp, path)
      _remove(old)
    else:
      os.replace(tmp, path)
    fsync_dir(parent)
  except BaseException:
    for p in glob.glob(glob.escape(tmp) + "*"):  # and what a writer put beside it
      _remove(p)
    raise


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (replacing it)."""
  with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
    f.write(text)


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` atomically (replacing it)."""
  with atomic_path(path) as tmp, open(tmp, "wb") as f:
    f.write(data)


class FolderBusy(RuntimeError):
  """Another process holds the lock of a folder."""


class FolderLock:
  """An exclusive lock on a folder (created if missing), held by this process.

  `flock` on the folder's own descriptor: no lock file, released by the kernel
  when the process ends however it ends. On a network file system without
  `flock` support the lock is not shared between machines. Re-entrant within a
  process: acquiring a folder this process holds is a no-op, one release frees it.
  """

  _held: dict[str, int] = {}  # realpath -> descriptor

  def __init__(self, path: str, what: str = "run"):
    self.path, self.what = path, what

  def acquire(self, wait: bool = False, notify: Callable[[str], None] | None = None) -> None:
    os.makedirs(self.path, exist_ok=True)
    key = os.path.realpath(self.path)
    if key in self._held:
      return
    fd = os.open(key, os.O_RDONLY)
    try:
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        if not wait:
          raise FolderBusy(
            f"{self.path}: another exfiqa process is using this folder ({self.what}); "
            "wait for it to finish or use another folder"
          ) from None
        (notify or _stderr)(f"{self.path}: waiting for another exfiqa process ({self.what})")
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
      os.close(fd)
      raise
    self._held[key] = fd

  def release(self) -> None:
    fd = self._held.pop(os.path.realpath(self.path), None)
    if fd is not None:
      os.close(fd)  # closing the descriptor releases the flock

  def __enter__(self) -> FolderLock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def _stderr(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def _set_paths(root: str, name: str) -> tuple[str, str]:
  return os.path.join(root, f".exfiqa-{name}.json"), os.path.join(
    root, f".exfiqa-{name}.commit.json"
  )


def _inside(rel: str) -> bool:
  """A manifest entry that names a file under its root (only those are ever removed)."""
  norm = os.path.normpath(rel)
  return (
    not os.path.isabs(norm) and norm != "." and not norm.startswith(".." + os.sep) and norm != ".."
  )


def _files_under(folder: str) -> list[str]:
  out = []
  for base, _, files in os.walk(folder):
    out += [os.path.relpath(os.path.join(base, f), folder) for f in files]
  return sorted(out)


def _apply_commit(root: str, journal_path: str, manifest_path: str) -> None:
  """Carries out a commit journal (idempotent: a second pass after a kill finishes it)."""
  j = read_json(journal_path, "output set journal", 1 << 24)
  staging = os.path.join(root, j["staging"])
  # staged relative path -> destination (relative to root, or absolute outside it)
  targets = {r: os.path.join(root, d) for r, d in j["targets"].items()}
  last = [r for r in j["last"] if r in targets]
  remove = [os.path.join(root, p) for p in j["remove"] if isinstance(p, str) and _inside(p)]
  for dest in [*remove, *(targets[r] for r in last)]:  # a journal removes only under root
    _remove(dest)  # the old set's files the new one lacks; its head
  for rel in [*(r for r in targets if r not in last), *last]:
    src, dest = os.path.join(staging, rel), targets[rel]
    if os.path.lexists(src):  # else moved by the pass a kill interrupted
      os.makedirs(os.path.dirname(dest), exist_ok=True)
      os.replace(src, dest)
      fsync_dir(os.path.dirname(dest))
  with atomic_path(manifest_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
    json.dump({"files": sorted([*j["targets"].values(), *j["kept"]])}, f)
  _remove(journal_path)
  _remove(staging)
  fsync_dir(root)


def finish_output_set(root: str, name: str) -> bool:
  """Finishes the commit of the output set `name` in `root` that a killed process left
  half done (its journal is written only once every file is staged, so the set is rolled
  forward); returns True when there was one. Call it holding the folder's lock."""
  manifest, journal = _set_paths(root, name)
  if not os.path.exists(journal):
    return False
  _apply_commit(root, journal, manifest)
  return True


@contextlib.contextmanager
def output_set(
  root: str,
  name: str,
  *,
  last: tuple[str, ...] = (),
  outside: dict[str, str] | None = None,
  kept: tuple[str, ...] = (),
) -> Iterator[str]:
  """Writes a set of files as one unit: yields a staging folder (hidden, in `root`);
  what the caller writes under it (relative paths) becomes `root/<path>` on success.

  On success, in this order: a journal naming every move is written (atomically), the
  previous set's files (the manifest `root/.exfiqa-<name>.json`) that the new set lacks
  are removed, and the `last` files (the set's head, e.g. summary.md) too, the staged
  files are moved into place with `last` at the end, the manifest is written and the
  journal removed. A kill before the journal leaves the previous set untouched (its
  staging folder is removed by the next write, `remove_stale`); a kill after it leaves
  the journal, and `finish_output_set` (called by the next output_set of the set) rolls
  the new set forward: no state mixes two sets once a command has run. On an exception
  nothing is moved and the staging folder is removed.

  outside: staged relative path -> a destination outside root (e.g. a checkpoint's
  policies.json); it is moved like the others (put it in `last` to move it at the end).
  kept: files already in place under root (relative) that belong to the set (written
  before it, e.g. a job's saved inputs): listed in the manifest, so that a later set
  without them removes them. The manifest and journal hold paths relative to root (a
  moved folder keeps working), absolute only for `outside` destinations.
  """
  root = os.path.abspath(root)
  os.makedirs(root, exist_ok=True)
  manifest, journal = _set_paths(root, name)
  finish_output_set(root, name)
  remove_stale(root, f"exfiqa-{name}-staging")
  staging = os.path.join(root, f".exfiqa-{name}-staging{_tag('tmp')}")
  os.mkdir(staging, 0o777)
  try:
    yield staging
    staged = _files_under(staging)
    out = {r: os.path.abspath(d) for r, d in (outside or {}).items()}
    targets = {r: out.get(r, r) for r in staged}
    try:
      old = read_json(manifest, "output set manifest", 1 << 24).get("files", [])
    except (OSError, ValueError, AttributeError):
      old = []
    keep = {*targets.values(), *kept}
    remove = [p for p in old if isinstance(p, str) and p not in keep and _inside(p)]
    fsync_tree(staging)
    doc = {
      "staging": os.path.basename(staging),
      "targets": targets,
      "last": list(last),
      "remove": remove,
      "kept": sorted(set(kept)),
    }
    with atomic_path(journal) as tmp, open(tmp, "w", encoding="utf-8") as f:
      json.dump(doc, f)
  except BaseException:
    _remove(staging)
    raise
  _apply_commit(root, journal, manifest)


@contextlib.contextmanager
def locked_folder(path: str, what: str) -> Iterator[None]:
  """Holds the lock of the output folder `path` (`FolderLock`, creating the folder) for
  the block; a folder this call created is removed again when the block fails and left
  it empty (a refused run leaves nothing behind)."""
  created = not os.path.lexists(path)
  lock = FolderLock(path, what)
  lock.acquire()
  try:
    yield
  except BaseException:
    if created:
      with contextlib.suppress(OSError):
        os.rmdir(path)  # only when empty
    raise
  finally:
    lock.release()
