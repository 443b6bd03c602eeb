"""Verification `.bin` files (docs/protocol.md §8): a pickle of (encoded images, issame).

Images 2k and 2k+1 form pair k. The pickle is never handed to `pickle`: a small
interpreter (`read_bin`) walks its opcodes and admits only what these files
hold (bytes, str, bool, 0/1 ints, lists, tuples, memo references, and
`_codecs.encode`, which protocol-2 pickles use to spell bytes). It is bounded:
every length an opcode declares is checked against the bytes left in the file
before anything is read, the memo is a dict (no index-sized table), and lists
hold at most `MAX_ITEMS` entries, so memory stays within a small multiple of
the file's size. Anything else is refused, naming the opcode and its offset.
"""

from __future__ import annotations

import os
import pickletools

import numpy as np

from exfiqa_jax.data.base import FaceBuilder

MAX_ITEMS = 1 << 24  # images in one .bin (LFW holds 12,000)
_MARK, _ENCODE = object(), object()
_BYTES = {"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BINSTRING", "SHORT_BINSTRING"}
_STR = {"BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
_INT = {"BININT", "BININT1", "BININT2"}


class _Refused(ValueError):
  pass


class _Bounded:
  """A file whose reads may not ask for more than is left in it."""

  def __init__(self, f, size: int):
    self.f, self.size = f, size

  def read(self, n: int = -1) -> bytes:
    left = self.size - self.f.tell()
    if n > left:
      raise _Refused(f"an opcode at byte {self.f.tell()} declares {n:,} bytes; {left:,} are left")
    return self.f.read(n)

  def readline(self) -> bytes:
    return self.f.readline(256)

  def tell(self) -> int:
    return self.f.tell()


def _pop_mark(stack: list) -> list:
  for i in range(len(stack) - 1, -1, -1):
    if stack[i] is _MARK:
      items = stack[i + 1 :]
      del stack[i:]
      return items
  raise _Refused("a MARK is missing")


def _interpret(f) -> object:
  stack: list = []
  memo: dict = {}
  for op, arg, pos in pickletools.genops(f):
    name = op.name
    if name in ("PROTO", "FRAME"):
      continue
    if name == "STOP":
      if len(stack) != 1:
        raise _Refused("the pickle does not end with one value")
      return stack[0]
    if name in _BYTES:
      stack.append(arg.encode("latin-1") if isinstance(arg, str) else arg)
    elif name in _STR or name in _INT:
      stack.append(arg)
    elif name in ("NEWTRUE", "NEWFALSE"):
      stack.append(name == "NEWTRUE")
    elif name == "NONE":
      stack.append(None)
    elif name == "MARK":
      stack.append(_MARK)
    elif name == "EMPTY_LIST":
      stack.append([])
    elif name == "EMPTY_TUPLE":
      stack.append(())
    elif name in ("APPEND", "APPENDS"):
      items = [stack.pop()] if name == "APPEND" else _pop_mark(stack)
      if not stack or not isinstance(stack[-1], list):
        raise _Refused(f"{name} at byte {pos} does not follow a list")
      if len(stack[-1]) + len(items) > MAX_ITEMS:
        raise _Refused(f"a list longer than {MAX_ITEMS:,} entries")
      stack[-1].extend(items)
    elif name in ("TUPLE", "LIST"):
      items = _pop_mark(stack)
      stack.append(tuple(items) if name == "TUPLE" else items)
    elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
      k = int(name[-1])
      if len(stack) < k:
        raise _Refused(f"{name} at byte {pos} with too few values")
      items = tuple(stack[-k:])
      del stack[-k:]
      stack.append(items)
    elif name in ("MEMOIZE", "BINPUT", "LONG_BINPUT"):
      if not stack:
        raise _Refused(f"{name} at byte {pos} on an empty stack")
      memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
    elif name in ("BINGET", "LONG_BINGET"):
      if arg not in memo:
        raise _Refused(f"{name} at byte {pos} names an unset memo entry")
      stack.append(memo[arg])
    elif name in ("GLOBAL", "STACK_GLOBAL"):
      where = arg if name == "GLOBAL" else " ".join(map(str, stack[-2:]))
      if name == "STACK_GLOBAL":
        del stack[-2:]
      if where != "_codecs encode":
        raise _Refused(f"the pickle asks for {where.replace(' ', '.')}")
      stack.append(_ENCODE)
    elif name == "REDUCE":
      args = stack.pop() if stack else None
      fn = stack.pop() if stack else None
      ok = fn is _ENCODE and isinstance(args, tuple) and len(args) == 2
      if not (ok and isinstance(args[0], str) and args[1] in ("latin1", "latin-1")):
        raise _Refused(f"REDUCE at byte {pos} is not _codecs.encode(str, 'latin1')")
      stack.append(args[0].encode("latin-1"))
    else:
      raise _Refused(f"opcode {name} at byte {pos} is not part of a verification .bin")
  raise _Refused("the pickle has no STOP")


def read_bin(path: str) -> tuple[list[bytes], np.ndarray]:
  """-> (encoded images [2P], issame bool [P]); refuses anything but plain data."""
  if os.path.isdir(path):
    raise IsADirectoryError(f"{path} is a folder, not a verification .bin file")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such verification .bin file")
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(2)
    f.seek(0)
    try:
      if size == 0:
        raise _Refused("the file is empty")
      if len(head) < 2 or head[0] != 0x80 or not 2 <= head[1] <= 5:
        raise _Refused(f"it does not start as a pickle of protocol 2-5 (starts {head!r})")
      obj = _interpret(_Bounded(f, size))
    except (_Refused, ValueError, EOFError, UnicodeDecodeError) as e:
      raise ValueError(
        f"{path}: refused or unreadable as a verification .bin pickle ({e}); "
        "only bytes, booleans, lists and tuples are admitted"
      ) from None
  ok = isinstance(obj, (tuple, list)) and len(obj) == 2
  images, issame = obj if ok else (None, None)
  if not (
    ok
    and isinstance(images, list)
    and all(isinstance(b, bytes) for b in images)
    and isinstance(issame, list)
  ):
    raise ValueError(
      f"{path}: not a verification .bin (expected a pair of a list of encoded "
      "images and a list of booleans)"
    )
  bad = [i for i, s in enumerate(issame) if s not in (0, 1) or not isinstance(s, int)]
  if bad:
    raise ValueError(
      f"{path}: issame[{bad[0]}] is {issame[bad[0]]!r}; the labels must be True/False or 0/1"
    )
  if len(images) != 2 * len(issame):
    raise ValueError(f"{path}: {len(images)} images for {len(issame)} pairs (need 2 per pair)")
  if not images:
    raise ValueError(f"{path}: holds no pairs")
  return images, np.asarray(issame, dtype=bool)


class VerificationBin(FaceBuilder):
  """A verification .bin file, `<manual_dir>/<config name>.bin` (lfw, agedb_30, cfp_fp,
  calfw, cplfw, or any other of the format): images and pairs."""

  name = "verification_bin"

  def _path(self) -> str:
    return os.path.join(self.manual_dir, f"{self.config}.bin")

  def manifest(self) -> list[str]:
    return [self._path()]

  def _read(self):
    images, issame = read_bin(self._path())
    n = len(images)
    ids = np.asarray([f"{i:06d}" for i in range(n)])
    pairs = dict(
      pair_a=np.arange(0, n, 2, dtype=np.int64),
      pair_b=np.arange(1, n, 2, dtype=np.int64),
      pair_label=issame,
    )
    return ids, images, dict(channel_order="rgb", **pairs)
