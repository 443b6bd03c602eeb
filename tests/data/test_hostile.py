"""Hostile files: each is refused with a clear error within a stated memory bound.

Every case runs in a fresh interpreter whose address space is capped
(RLIMIT_AS) at what it uses after its imports plus a budget far below the
allocation the file asks for, so an unbounded allocation fails the test with
MemoryError instead of passing on a large machine.
"""

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.score_helpers import faces

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHILD = textwrap.dedent("""
    import json, resource, sys
    {imports}
    def vm():
      for line in open("/proc/self/status"):
        if line.startswith("VmSize"):
          return int(line.split()[1]) * 1024
    limit = vm() + {budget}
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
      {call}
      print(json.dumps(["ok", ""]))
    except MemoryError:
      print(json.dumps(["MemoryError", ""]))
    except Exception as e:
      print(json.dumps([type(e).__name__, str(e)]))
""")


def bounded(call: str, imports: str, budget_mb: int = 256) -> tuple[str, str]:
  """(exception type name or "ok", message) of `call` run under the memory cap."""
  code = CHILD.format(imports=imports, call=call, budget=budget_mb << 20)
  env = {**os.environ, "PYTHONPATH": ROOT}
  r = subprocess.run(
    [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
  )
  assert r.returncode == 0, r.stderr[-2000:]
  return tuple(json.loads(r.stdout.strip().splitlines()[-1]))


READ_BIN = "from exfiqa_jax.data.verification_bin import read_bin"


@pytest.mark.parametrize(
  "raw,message",
  [
    # PROTO 4, NONE, LONG_BINPUT 2^28, STOP: a memo table of 2^28 entries elsewhere.
    (b"\x80\x04Nr" + struct.pack("<I", 1 << 28) + b".", r"not a verification \.bin"),
    # BINBYTES8 declaring 1 TiB in a 12-byte file.
    (b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b".", r"declares 1,099,511,627,776 bytes"),
    (b"GIF89a\x10\x00\x10\x00\xf0\x00\x00" + b"\xff" * 64, r"does not start as a pickle"),
    (b"", r"the file is empty"),
    (pickle.dumps(([b"a", b"b"], [7]), protocol=4), r"issame\[0\] is 7"),
    (pickle.dumps(([b"a", b"b"], [-1]), protocol=2), r"issame\[0\] is -1"),
    (pickle.dumps(([b"a", b"b"], [1.0]), protocol=4), r"opcode BINFLOAT at byte"),
    (pickle.dumps(([], []), protocol=4), r"holds no pairs"),
  ],
  ids=["memo-2^28", "bytes8-1TiB", "gif", "empty", "issame-7", "issame--1", "issame-float", "none"],
)
def test_hostile_bin_refused_within_bound(tmp_path, raw, message):
  import re

  path = tmp_path / "lfw.bin"
  path.write_bytes(raw)
  kind, text = bounded(f"read_bin({str(path)!r})", READ_BIN)
  assert kind == "ValueError", (kind, text)
  assert str(path) in text and re.search(message, text), text


def _zip_bomb(path, member: str, gib: float, extra: dict) -> None:
  """An .npz whose `member` declares float32 [gib GiB] of zeros, deflated to ~1 MB/GiB."""
  n = int(gib * (1 << 30)) // 4
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
    for k, v in extra.items():
      buf = io.BytesIO()
      np.lib.format.write_array(buf, v)
      zf.writestr(f"{k}.npy", buf.getvalue())
    with zf.open(f"{member}.npy", "w", force_zip64=True) as f:
      header = io.BytesIO()
      np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (n,)}
      )
      f.write(header.getvalue())
      zeros = bytes(1 << 24)
      for _ in range(n * 4 // len(zeros)):
        f.write(zeros)


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
  path = tmp_path_factory.mktemp("npz") / "scores.npz"
  extra = dict(paths=np.array(["a.png", "b.png"]), exit_scores=np.ones((2, 3), np.float32))
  _zip_bomb(path, "junk", 1.0, extra)
  assert os.path.getsize(path) < 8 << 20
  return path


NPZ = "from exfiqa_jax.data.npz import read_npz"


def test_npz_reads_only_the_members_asked_for(bomb):
  kind, text = bounded(
    f"z = read_npz({str(bomb)!r}, ['paths', 'exit_scores'])\n"
    "  assert z['exit_scores'].shape == (2, 3)",
    NPZ,
  )
  assert kind == "ok", text
  kind, text = bounded(f"read_npz({str(bomb)!r}, ['junk'])", NPZ)
  assert kind == "ValueError" and "member 'junk' declares 1,073,741,824 bytes" in text, text


def test_sweep_on_scores_with_a_huge_unused_member(bomb, tmp_path):
  (tmp_path / "pairs.txt").write_text("a.png b.png 1 0.5\n")
  kind, text = bounded(
    f"z = PairInputs.from_score_file({str(bomb)!r}, {str(tmp_path / 'pairs.txt')!r}, "
    "[1.0, 2.0, 3.0])\n"
    f"  assert z.a.tolist() == [0]",
    "from exfiqa_jax.metrics.inputs import PairInputs",
  )
  assert kind == "ok", text


def _png_header_only(width: int, height: int) -> bytes:
  """A PNG whose header claims width x height, followed by a tiny broken IDAT."""

  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

  ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
  return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def test_huge_png_refused_from_its_header(tmp_path):
  (tmp_path / "imgs").mkdir()
  for i in range(4):
    (tmp_path / "imgs" / f"big{i}.png").write_bytes(_png_header_only(12000, 12000))
  kind, text = bounded(
    f"src = from_files({str(tmp_path / 'imgs')!r}).images\n  src.read([0, 1, 2, 3])",
    "from exfiqa_jax.data import from_files",
  )
  assert kind == "ValueError", (kind, text)
  assert "big0.png: images must be 112x112 aligned crops; the file is 12000x12000" in text


def test_16_bit_png_refused_not_clipped(tmp_path):
  from exfiqa_jax.data.images import read_image

  deep = (np.arange(112 * 112, dtype=np.uint16).reshape(112, 112) * 5).astype(np.uint16)
  Image.fromarray(deep).save(tmp_path / "deep.png")
  with Image.open(tmp_path / "deep.png") as im:
    assert im.mode.startswith("I")  # really stored with 16 bits
  with pytest.raises(ValueError, match=r"deep\.png: 16-bit .* only 8-bit images are read"):
    read_image(str(tmp_path / "deep.png"), 112)
  rgb48 = tmp_path / "rgb48.png"
  Image.fromarray(faces(1)[0]).save(rgb48)
  data = bytearray(rgb48.read_bytes())
  data[24] = 16  # the header's bit depth
  rgb48.write_bytes(bytes(data))
  with pytest.raises(ValueError, match=r"rgb48\.png: (16-bit|cannot decode)"):
    read_image(str(rgb48), 112)


def test_long_line_in_a_list_file_refused(tmp_path):
  Image.fromarray(faces(1)[0]).save(tmp_path / "a.png")
  with open(tmp_path / "list.txt", "w") as f:
    f.write("x" * 40000 + "\n")
    f.write("a.png\n" * 100_000)
  kind, text = bounded(
    f"from_files({str(tmp_path / 'list.txt')!r})", "from exfiqa_jax.data import from_files"
  )
  assert kind == "ValueError" and "list.txt:1: line longer than 1024 bytes" in text, text


def test_inputs_with_too_many_exits_refused_before_the_sweep(tmp_path):
  p = tmp_path / "inputs.npz"
  rng = np.random.default_rng(0)
  np.savez(
    p,
    exit_scores=rng.random((8, 26)).astype(np.float32),
    a=np.array([0, 2]),
    b=np.array([1, 3]),
    labels=np.array([True, False]),
    comparison=np.array([0.5, 0.1]),
    cost=np.arange(1, 27.0),
  )
  kind, text = bounded(
    f"args = ['sweep', '--quiet', '--inputs', {str(p)!r}, '--out', {str(tmp_path / 's')!r}]\n"
    "  assert main(args) == 2",
    "from exfiqa_jax.cli import main\nimport exfiqa_jax.evaluation.saved_sweep",
    budget_mb=1024,
  )
  assert kind == "ok", text
  from exfiqa_jax.metrics.inputs import PairInputs

  with pytest.raises(ValueError, match=r"inputs\.npz: 26 exits; the sweep takes 1 to 24"):
    PairInputs.load(str(p))
  assert not (tmp_path / "s").exists()


def test_write_npz_reads_back_as_np_savez_does(tmp_path):
  from exfiqa_jax.data.npz import read_npz, write_npz

  arrays = {
    "ids": np.array(["a", "bb", "c\nd"]),
    "exit_scores": np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    "mask": np.array([True, False, True]),
  }
  write_npz(str(tmp_path / "a.npz"), arrays)
  np.savez(tmp_path / "b.npz", **arrays)
  for path in ("a.npz", "b.npz"):
    with np.load(tmp_path / path) as z:
      assert sorted(z.files) == sorted(arrays)
      for k, v in arrays.items():
        assert z[k].dtype == v.dtype and np.array_equal(z[k], v)
    got = read_npz(str(tmp_path / path))
    assert all(np.array_equal(got[k], v) for k, v in arrays.items())
  with pytest.raises(ValueError, match="Object arrays cannot be saved"):
    write_npz(str(tmp_path / "c.npz"), {"o": np.array([{}], dtype=object)})
