"""insightface's MXNet ArcFace release, read without MXNet: `PREFIX-symbol.json` (the graph) and
`PREFIX-EPOCH.params` (the weights), the two files CR-FIQA's `ArcFaceModel.py` loads with
`mx.model.load_checkpoint(prefix, epoch)` before reading the `fc1_output` embedding.

    config, state_dict = read_mxnet("model-r100-ii/model-0000.params")   # or the prefix

The graph must be insightface's LResNet-IR (`symbol/fresnet.py` `resnet()`, version_input 1,
`residual_unit_v3` without SE, PReLU as LeakyReLU act_type "prelu"; `symbol_utils.get_fc1`
fc_type "E"): `(x - 127.5) * 0.0078125` inside, conv0 3x3 + bn0 + PReLU, units of
BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN plus the identity or conv1x1(stride)+BN
shortcut, then bn1 -> Dropout -> FullyConnected `pre_fc1` -> BatchNorm `fc1`. That is the
project's iResNet (`exfiqa_jax.models.iresnet`) layer for layer; the weights come back as a
state_dict of numpy float32 arrays under its PyTorch names (`convert/fr_mapping.py`), which
the face-recognition import takes as it takes a PyTorch file. Any other graph is refused in one
line. What the graph says, not guessed: every BatchNorm's eps (one value for the model) and
`fix_gamma` (MXNet then computes with gamma 1 whatever is stored: the stored value is
replaced by ones), the input scaling (`input_scale="mxnet"`), the embedding output `fc1`.

The `.params` file is MXNet's NDArray list (`src/ndarray/ndarray.cc` `NDArray::Save/Load`),
little-endian: u64 magic 0x112, u64 reserved, u64 count, `count` arrays, u64 count, `count`
strings (u64 length + bytes) naming them `arg:NAME` or `aux:NAME`. An array: u32 magic
0xF993FAC9 (V2; V3 0xF993FACA is the same bytes), i32 storage type (0, dense), i32 ndim,
ndim x i64 dims, i32 device type + i32 device id, i32 dtype flag, the data. Older files: V1
magic 0xF993FAC8 (no storage type), or no magic, the first u32 being ndim with u32 dims.
Every declared size is checked against the bytes left before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import mmap
import os
import re
import struct
from collections.abc import Callable

import numpy as np

from exfiqa_jax.models.fr_config import FRConfig

FAMILY = "arcface-mxnet"
LIST_MAGIC = 0x112
V1_MAGIC, V2_MAGIC, V3_MAGIC = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
# mshadow type flags (mshadow/base.h); weights are read as float32 where that is exact.
DTYPES = {
  0: ("float32", np.dtype("<f4")),
  1: ("float64", None),
  2: ("float16", np.dtype("<f2")),
  3: ("uint8", None),
  4: ("int32", None),
  5: ("int8", None),
  6: ("int64", None),
  7: ("bool", None),
  8: ("int16", None),
  9: ("uint16", None),
  10: ("uint32", None),
  11: ("uint64", None),
  12: ("bfloat16", None),
}
DEVICES = {1: "cpu", 2: "gpu", 3: "cpu_pinned", 5: "cpu_shared"}  # base.h Context::DeviceType
MAX_NDIM = 8
MAX_NAME = 1024
MAX_SYMBOL_BYTES = 64 << 20
MAX_NODES = 100_000
# The in-graph input normalisation of insightface's MXNet symbols (fresnet.py):
# data - 127.5, then * 0.0078125 (= 1/128).
INPUT_SHIFT, INPUT_MUL = 127.5, 0.0078125


def mxnet_files(path: str) -> tuple[str, str]:
  """(symbol json, params) of `PREFIX-EPOCH.params` or of `PREFIX` with one such file."""
  m = re.fullmatch(r"(.*)-(\d{4})\.params", path)
  if m:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"{path}: no such file")
    prefix = m.group(1)
  else:
    prefix = path
    found = sorted(p for p in glob.glob(glob.escape(prefix) + "-*.params") if _epoch(p, prefix))
    if len(found) != 1:
      what = "no PREFIX-EPOCH.params file" if not found else f"{len(found)}: {found[:4]}"
      raise FileNotFoundError(
        f"{path}: not an MXNet checkpoint (PREFIX-EPOCH.params or its PREFIX); found {what}"
      )
    path = found[0]
  symbol = prefix + "-symbol.json"
  if not os.path.isfile(symbol):
    raise FileNotFoundError(f"{symbol}: no such file (the graph of {path})")
  return symbol, path


def _epoch(p: str, prefix: str) -> bool:
  return re.fullmatch(r"-\d{4}\.params", p[len(prefix) :]) is not None


class _Bytes:
  """A bounded little-endian cursor over the mapped file; every read is checked first."""

  def __init__(self, path: str, buf):
    self.path, self.buf, self.pos = path, buf, 0

  def fail(self, what: str) -> ValueError:
    return ValueError(f"{self.path}: not an MXNet .params file: {what}")

  def need(self, n: int, what: str) -> None:
    left = len(self.buf) - self.pos
    if n > left:
      raise self.fail(f"{what} needs {n:,} bytes at byte {self.pos:,}, the file has {left:,} left")

  def unpack(self, fmt: str, what: str) -> tuple:
    size = struct.calcsize(fmt)
    self.need(size, what)
    out = struct.unpack_from(fmt, self.buf, self.pos)
    self.pos += size
    return out

  def u64(self, what: str) -> int:
    return self.unpack("<Q", what)[0]


def _array(r: _Bytes, i: int) -> np.ndarray:
  """Array i of the list, as float32 (a copy, independent of the mapping)."""
  at = r.pos
  (magic,) = r.unpack("<I", f"array {i}'s magic")
  if magic in (V2_MAGIC, V3_MAGIC):
    (stype,) = r.unpack("<i", f"array {i}'s storage type")
    if stype != 0:
      raise r.fail(f"array {i} (byte {at:,}) has storage type {stype}, not dense (0)")
  if magic in (V1_MAGIC, V2_MAGIC, V3_MAGIC):
    (ndim,) = r.unpack("<i", f"array {i}'s ndim")
    dim_fmt = "q"
  elif magic <= MAX_NDIM:  # the oldest layout: no magic, u32 ndim then u32 dims
    ndim, dim_fmt = magic, "I"
  else:
    raise r.fail(f"array {i} (byte {at:,}) starts with 0x{magic:08X}, no NDArray magic")
  if not 1 <= ndim <= MAX_NDIM:
    raise r.fail(f"array {i} (byte {at:,}) has {ndim} dimensions (1 to {MAX_NDIM} expected)")
  shape = r.unpack(f"<{ndim}{dim_fmt}", f"array {i}'s shape")
  if min(shape) < 0:
    raise r.fail(f"array {i} has negative dimensions {shape}")
  dev_type, dev_id = r.unpack("<ii", f"array {i}'s context")
  if dev_type not in DEVICES or dev_id < 0:
    raise r.fail(f"array {i} has an unknown context (device type {dev_type}, id {dev_id})")
  (flag,) = r.unpack("<i", f"array {i}'s dtype")
  if flag not in DTYPES:
    raise r.fail(f"array {i} has unknown dtype flag {flag}")
  name, dtype = DTYPES[flag]
  if dtype is None:
    raise r.fail(f"array {i} has dtype {name}; weights are float32 or float16")
  count = math.prod(shape)
  r.need(count * dtype.itemsize, f"array {i}'s {shape} {name} data")
  out = np.frombuffer(r.buf, dtype, count, r.pos).reshape(shape).astype(np.float32)
  r.pos += count * dtype.itemsize
  return out


def read_params(path: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """(arg params, aux params) of an MXNet `.params` file, float32, names without prefixes."""
  size = os.path.getsize(path)
  if size == 0:
    raise ValueError(f"{path}: not an MXNet .params file: the file is empty")
  with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
    r = _Bytes(path, buf)
    magic, _ = r.unpack("<QQ", "the header")
    if magic != LIST_MAGIC:
      raise r.fail(f"magic 0x{magic:X}, expected 0x{LIST_MAGIC:X}")
    n = r.u64("the array count")
    # Each array takes at least 20 bytes (the oldest layout: ndim, one dim, context, dtype).
    r.need(n * 20, f"{n:,} arrays")
    arrays = [_array(r, i) for i in range(n)]
    k = r.u64("the name count")
    if k != n:
      raise r.fail(f"{n} arrays but {k} names")
    r.need(k * 8, f"{k:,} names")
    names = []
    for i in range(k):
      length = r.u64(f"name {i}'s length")
      if length > MAX_NAME:
        raise r.fail(f"name {i} declares {length:,} bytes (at most {MAX_NAME})")
      r.need(length, f"name {i}")
      try:
        names.append(bytes(buf[r.pos : r.pos + length]).decode("utf-8"))
      except UnicodeDecodeError:
        raise r.fail(f"name {i} is not UTF-8") from None
      r.pos += length
    if r.pos != size:
      raise r.fail(f"{size - r.pos:,} bytes after the names list")
  out: tuple[dict, dict] = ({}, {})
  for name, a in zip(names, arrays, strict=True):
    kind, _, bare = name.partition(":")
    if kind not in ("arg", "aux") or not bare:
      raise ValueError(f"{path}: array name {name!r} is not 'arg:NAME' or 'aux:NAME'")
    if bare in out[0] or bare in out[1]:
      raise ValueError(f"{path}: parameter {bare!r} is stored twice")
    out[kind == "aux"][bare] = a
  return out


@dataclasses.dataclass
class _Node:
  index: int
  op: str
  name: str
  attrs: dict[str, str]
  inputs: list[int]  # producer node indices (output 0 of each; checked)


def read_symbol(path: str) -> list[_Node]:
  """The nodes of an MXNet symbol JSON file, checked for form (not yet for structure)."""
  size = os.path.getsize(path)
  if size > MAX_SYMBOL_BYTES:
    raise ValueError(f"{path}: {size:,} bytes, over {MAX_SYMBOL_BYTES:,} for a symbol file")

  def fail(what: str) -> ValueError:
    return ValueError(f"{path}: not an MXNet symbol file: {what}")

  try:
    with open(path, encoding="utf-8") as f:
      doc = json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
    raise fail(f"invalid JSON ({type(e).__name__}: {e})") from None
  raw = doc.get("nodes") if isinstance(doc, dict) else None
  if not isinstance(raw, list) or not raw or len(raw) > MAX_NODES:
    raise fail(f"no 'nodes' list of 1 to {MAX_NODES:,} entries")
  nodes = []
  for i, n in enumerate(raw):
    if not (
      isinstance(n, dict) and isinstance(n.get("op"), str) and isinstance(n.get("name"), str)
    ):
      raise fail(f"node {i} has no 'op' and 'name' strings")
    attrs: dict[str, str] = {}
    for key in ("param", "attr", "attrs"):  # older releases wrote 'param' / 'attr'
      d = n.get(key, {})
      if not isinstance(d, dict) or not all(isinstance(v, str) for v in d.values()):
        raise fail(f"node {i} ({n['name']}) has a malformed {key!r}")
      for k, v in d.items():
        if attrs.setdefault(k, v) != v:
          raise fail(f"node {i} ({n['name']}) gives {k!r} twice, differently")
    inputs = []
    if not isinstance(n.get("inputs", []), list):
      raise fail(f"node {i} ({n['name']}) has no 'inputs' list")
    for e in n.get("inputs", []):
      if not (
        isinstance(e, list)
        and 2 <= len(e) <= 3
        and all(isinstance(v, int) and not isinstance(v, bool) for v in e)
        and 0 <= e[0] < i
      ):
        raise fail(f"node {i} ({n['name']}) has input {e!r}, not [earlier node, output, ...]")
      if e[1] != 0:
        raise fail(f"node {i} ({n['name']}) reads output {e[1]} of node {e[0]}")
      inputs.append(e[0])
    nodes.append(_Node(i, n["op"], n["name"], attrs, inputs))
  return nodes


# MXNet operator defaults (dmlc parameter declarations), used where the JSON omits a key.
BN_DEFAULTS = {"eps": "0.001", "fix_gamma": "True", "axis": "1", "output_mean_var": "False"}
CONV_DEFAULTS = {"stride": "()", "pad": "()", "dilate": "()", "num_group": "1", "no_bias": "False"}
ADD_OPS = ("elemwise_add", "_Plus", "_plus", "_add")
COPY_OPS = ("_copy", "identity")
MINUS_OPS, MUL_OPS = ("_minus_scalar", "_MinusScalar"), ("_mul_scalar", "_MulScalar")


def _bool(v: str) -> bool | None:
  return {"true": True, "1": True, "false": False, "0": False}.get(v.strip().lower())


def _ints(v: str) -> tuple[int, ...] | None:
  """'(3, 3)' or '[2,2]' or '3' -> ints; None when malformed."""
  parts = [p for p in v.strip().strip("()[]").split(",") if p.strip()]
  try:
    return tuple(int(p) for p in parts)
  except ValueError:
    return None


class _Graph:
  """Walks the graph backwards from `fc1`, checking each operator against fresnet.py and
  collecting (PyTorch name, kind, MXNet variable names) for the state_dict."""

  def __init__(self, path: str, nodes: list[_Node]):
    self.path, self.nodes = path, nodes
    self.entries: list[tuple[str, str, list[str], bool]] = []  # torch, kind, vars, fix_gamma
    self.eps: dict[str, float] = {}

  def refuse(self, node: _Node | None, what: str) -> ValueError:
    at = f" at node {node.index} {node.name!r} ({node.op})" if node else ""
    return ValueError(
      f"{self.path}: not insightface's LResNet-IR (fresnet.py unit3, output E){at}: {what}"
    )

  def producer(self, node: _Node, k: int) -> _Node:
    if k >= len(node.inputs):
      raise self.refuse(node, f"has {len(node.inputs)} inputs, input {k} expected")
    return self.nodes[node.inputs[k]]

  def variables(self, node: _Node, count: int) -> list[str]:
    """The names of inputs 1..count: parameter variables ('null' nodes)."""
    if len(node.inputs) != count + 1:
      raise self.refuse(node, f"has {len(node.inputs)} inputs, {count + 1} expected")
    out = []
    for k in range(1, count + 1):
      v = self.producer(node, k)
      if v.op != "null" or v.name == "data":
        raise self.refuse(node, f"input {k} is {v.name!r} ({v.op}), not a parameter variable")
      out.append(v.name)
    return out

  def expect(self, node: _Node, ops: tuple[str, ...]) -> _Node:
    if node.op not in ops:
      raise self.refuse(node, f"{' or '.join(ops)} expected here")
    return node

  def attr(self, node: _Node, key: str, defaults: dict[str, str], parse: Callable, ok) -> object:
    raw = node.attrs.get(key, defaults.get(key))
    value = parse(raw) if isinstance(raw, str) else None
    if value is None or not ok(value):
      raise self.refuse(node, f"{key}={raw!r}")
    return value

  def batch_norm(self, node: _Node, torch: str) -> _Node:
    self.expect(node, ("BatchNorm",))
    self.attr(node, "axis", BN_DEFAULTS, _ints, lambda v: v == (1,))
    self.attr(node, "output_mean_var", BN_DEFAULTS, _bool, lambda v: v is False)
    eps = self.attr(node, "eps", BN_DEFAULTS, _float, lambda v: 0 < v < 1)
    fix = self.attr(node, "fix_gamma", BN_DEFAULTS, _bool, lambda v: True)
    self.eps[node.name] = eps
    self.entries.append((torch, "bn", self.variables(node, 4), fix))
    return self.producer(node, 0)

  def conv(self, node: _Node, torch: str, kernel: int, stride: int) -> _Node:
    self.expect(node, ("Convolution",))
    d = CONV_DEFAULTS
    self.attr(node, "no_bias", d, _bool, lambda v: v is True)
    self.attr(node, "num_group", d, _ints, lambda v: v == (1,))
    self.attr(node, "kernel", d, _ints, lambda v: v == (kernel, kernel))
    self.attr(node, "stride", d, _ints, lambda v: (v or (1, 1)) == (stride, stride))
    self.attr(node, "pad", d, _ints, lambda v: (v or (0, 0)) == (kernel // 2,) * 2)
    self.attr(node, "dilate", d, _ints, lambda v: (v or (1, 1)) == (1, 1))
    if node.attrs.get("layout", "None") not in ("None", "NCHW"):
      raise self.refuse(node, f"layout={node.attrs['layout']!r}")
    self.entries.append((torch, "conv", self.variables(node, 1), False))
    return self.producer(node, 0)

  def prelu(self, node: _Node, torch: str) -> _Node:
    self.expect(node, ("LeakyReLU",))
    if node.attrs.get("act_type", "leaky") != "prelu":
      raise self.refuse(node, f"act_type={node.attrs.get('act_type', 'leaky')!r}, not 'prelu'")
    self.entries.append((torch, "prelu", self.variables(node, 1), False))
    return self.producer(node, 0)

  def unit(self, add: _Node, name: str) -> tuple[_Node, int, bool]:
    """One residual_unit_v3 ending at `add` -> (its input, stride, has the conv shortcut)."""
    self.expect(add, ADD_OPS)
    if len(add.inputs) != 2:
      raise self.refuse(add, "a sum of 2 inputs expected")
    main, short = self.producer(add, 0), self.producer(add, 1)
    # conv2's stride is found from the shortcut: stride 2 with a conv shortcut, else 1.
    projected = short.op == "BatchNorm"
    stride = 2 if projected else 1
    x = self.batch_norm(main, f"{name}.bn3")
    x = self.conv(x, f"{name}.conv2", 3, stride)
    x = self.prelu(x, f"{name}.prelu")
    x = self.batch_norm(x, f"{name}.bn2")
    x = self.conv(x, f"{name}.conv1", 3, 1)
    x = self.batch_norm(x, f"{name}.bn1")
    if projected:
      sc = self.batch_norm(short, f"{name}.downsample.1")
      sc = self.conv(sc, f"{name}.downsample.0", 1, 2)
      if sc is not x:
        raise self.refuse(add, "the shortcut does not start from the unit's input")
    elif short is not x:
      raise self.refuse(add, "the identity shortcut is not the unit's input")
    return x, stride, projected

  def walk(self) -> tuple[list[int], float, float]:
    """-> (units per stage, input shift, input multiplier); fills `entries`."""
    heads = [n for n in self.nodes if n.name == "fc1" and n.op != "null"]
    if len(heads) != 1:
      raise self.refuse(None, f"{len(heads)} operator nodes named 'fc1' (the embedding, 1)")
    x = self.batch_norm(heads[0], "features")
    self.expect(x, ("FullyConnected",))
    self.attr(x, "no_bias", {"no_bias": "False"}, _bool, lambda v: v is False)
    self.attr(x, "flatten", {"flatten": "True"}, _bool, lambda v: v is True)
    self.entries.append(("fc", "fc", self.variables(x, 2), False))
    x = self.producer(x, 0)
    if x.op == "Dropout":  # the identity at inference, unless mode "always"
      if x.attrs.get("mode", "training") != "training":
        raise self.refuse(x, f"mode={x.attrs['mode']!r}: dropout at inference")
      x = self.producer(x, 0)
    x = self.batch_norm(x, "bn2")
    units = []  # (stride, projected), last unit first
    while x.op in ADD_OPS:
      mark = len(self.entries)
      x, stride, projected = self.unit(x, "")
      units.append((stride, projected, mark))
    if not units or not units[-1][1]:
      raise self.refuse(x, "the first unit must have the conv1x1 stride-2 shortcut")
    x = self.prelu(x, "prelu")
    x = self.batch_norm(x, "bn1")
    x = self.conv(x, "conv1", 3, 1)
    mul = self.expect(x, MUL_OPS)
    minus = self.expect(self.producer(mul, 0), MINUS_OPS)
    scalars = [self.attr(n, "scalar", {}, _float, lambda v: True) for n in (minus, mul)]
    data = self.producer(minus, 0)
    while data.op in COPY_OPS:
      data = self.producer(data, 0)
    if data.op != "null" or data.name != "data":
      raise self.refuse(data, "the normalisation must read the input variable 'data'")
    self._name_units(units)
    layers = []
    for _, projected, _ in reversed(units):
      if projected:
        layers.append(0)
      layers[-1] += 1
    return layers, *scalars

  def _name_units(self, units: list[tuple[int, bool, int]]) -> None:
    """Prefix each unit's entries with `layer{s}.{i}`, now that the stages are known."""
    s, i, names = 0, 0, {}
    for _, projected, mark in reversed(units):
      s, i = (s + 1, 0) if projected else (s, i + 1)
      names[mark] = f"layer{s}.{i}"
    marks = sorted(names)
    for j, (torch, kind, var, fix) in enumerate(self.entries):
      if torch.startswith("."):
        mark = max(m for m in marks if m <= j)
        self.entries[j] = (names[mark] + torch, kind, var, fix)


def _float(v: str) -> float | None:
  try:
    f = float(v)
  except ValueError:
    return None
  return f if math.isfinite(f) else None


# (PyTorch suffix, MXNet suffix, arg or aux) of each kind of layer.
PARTS = {
  "bn": [("weight", "gamma", 0), ("bias", "beta", 0), ("running_mean", "moving_mean", 1),
         ("running_var", "moving_var", 1)],
  "conv": [("weight", "weight", 0)],
  "prelu": [("weight", "gamma", 0)],
  "fc": [("weight", "weight", 0), ("bias", "bias", 0)],
}  # fmt: skip


def read_mxnet(path: str) -> tuple[FRConfig, dict[str, np.ndarray]]:
  """(config, state_dict) of the MXNet checkpoint `path` (PREFIX-EPOCH.params or PREFIX).

  The state_dict holds numpy float32 arrays under the PyTorch iResNet names
  (`conv1.weight`, `layer1.0.bn1.running_var`, ..., `fc.weight` [D, C*g*g] flattened as
  MXNet and PyTorch both flatten, NCHW, `features.*`); a `fix_gamma` BatchNorm's weight is
  ones. Shapes are checked by the import (`convert.core.variables`).
  """
  symbol, params = mxnet_files(path)
  graph = _Graph(symbol, read_symbol(symbol))
  layers, shift, mul = graph.walk()
  if (shift, mul) != (INPUT_SHIFT, INPUT_MUL):
    raise graph.refuse(
      None, f"input normalisation (x - {shift}) * {mul}, not (x - 127.5) * 0.0078125"
    )
  if len(set(graph.eps.values())) != 1:
    eps = sorted(set(graph.eps.values()))
    raise graph.refuse(None, f"BatchNorm eps differ across layers ({eps}); the model takes one")
  args, auxs = read_params(params)
  sd, used, missing = {}, set(), []
  for torch, kind, names, fix in graph.entries:
    for (t, m, aux), var in zip(PARTS[kind], names, strict=True):
      if not var.endswith("_" + m):
        raise graph.refuse(None, f"{kind} parameter {var!r} does not end in '_{m}'")
      store = auxs if aux else args
      if var not in store:
        missing.append(f"{'aux' if aux else 'arg'}:{var}")
        continue
      used.add(var)
      sd[f"{torch}.{t}"] = np.ones_like(store[var]) if fix and m == "gamma" else store[var]
  extra = sorted((set(args) | set(auxs)) - used)
  if missing or extra:
    raise ValueError(
      f"{params}: does not hold exactly the parameters of {os.path.basename(symbol)}'s fc1 "
      f"embedding: missing {missing[:6]}{' ...' if len(missing) > 6 else ''}, "
      f"unused {extra[:6]}{' ...' if len(extra) > 6 else ''}"
    )
  widths = [sd[f"layer{s + 1}.0.conv1.weight"].shape[0] for s in range(len(layers))]
  embedding_size, fc_in = sd["fc.weight"].shape if sd["fc.weight"].ndim == 2 else (0, 0)
  grid = math.isqrt(fc_in // widths[-1]) if widths[-1] and fc_in % widths[-1] == 0 else 0
  if grid < 1 or grid * grid * widths[-1] != fc_in:
    raise ValueError(
      f"{params}: pre_fc1's weight has shape {sd['fc.weight'].shape}: its inputs are not a "
      f"square map of the last stage's {widths[-1]} channels"
    )
  try:
    config = FRConfig.for_family(
      FAMILY,
      layers=tuple(layers),
      widths=tuple(widths),
      stem_width=sd["conv1.weight"].shape[0],
      embedding_size=embedding_size,
      image_size=grid * 2 ** len(layers),
    )
  except ValueError as e:
    raise ValueError(f"{params}: {e}") from None
  return dataclasses.replace(config, bn_eps=next(iter(graph.eps.values()))), sd
