"""MXNet checkpoint files written with numpy alone, for the tests that run without MXNet.

`symbol_nodes(spec)` builds the node list of insightface's LResNet-IR as MXNet's
`tojson` writes it for `tests/convert/mxnet_reference.py` (fresnet.py, unit3, version_input 1,
output E); a test checks it against the real MXNet JSON where MXNet is available.
`write_params` writes MXNet's NDArray list format (src/ndarray/ndarray.cc `NDArray::Save`):
V2 as MXNet 1.x writes it, and the older V1 and magic-less layouts its loader still reads.
"""

from __future__ import annotations

import json
import struct

import numpy as np

SPEC = {"stem": 8, "widths": [8, 16, 24, 32], "units": [1, 2, 1, 2], "emb": 24, "eps": 2e-5}
FLAGS = {np.dtype("float32"): 0, np.dtype("float64"): 1, np.dtype("float16"): 2}


class _Nodes:
  def __init__(self):
    self.nodes: list[dict] = []
    self.aux: set[int] = set()

  def add(self, op: str, name: str, inputs=(), attrs=None) -> int:
    # MXNet marks the inputs it mutates (BatchNorm's running statistics) with version 1.
    node = {"op": op, "name": name, "inputs": [[i, 0, int(i in self.aux)] for i in inputs]}
    if attrs:
      node["attrs"] = {k: str(v) for k, v in attrs.items()}
    self.nodes.append(node)
    return len(self.nodes) - 1

  def layer(self, op: str, name: str, x: int, params: list[str], attrs: dict) -> int:
    ids = [self.add("null", f"{name}_{p}") for p in params]
    self.aux.update(i for i, p in zip(ids, params, strict=True) if p.startswith("moving_"))
    return self.add(op, name, [x, *ids], attrs)

  def bn(self, x: int, name: str, eps: float, fix: bool = False) -> int:
    attrs = {"eps": eps, "fix_gamma": fix, "momentum": 0.9}
    return self.layer("BatchNorm", name, x, ["gamma", "beta", "moving_mean", "moving_var"], attrs)

  def conv(self, x: int, name: str, width: int, k: int, stride: int) -> int:
    attrs = {"kernel": (k, k), "no_bias": True, "num_filter": width}
    if k == 3:
      attrs["pad"] = (1, 1)
    attrs.update(stride=(stride, stride), workspace=256)
    return self.layer("Convolution", name, x, ["weight"], dict(sorted(attrs.items())))

  def prelu(self, x: int, name: str) -> int:
    return self.layer("LeakyReLU", name, x, ["gamma"], {"act_type": "prelu"})


def symbol_nodes(spec: dict = SPEC) -> list[dict]:
  g, eps, adds = _Nodes(), spec["eps"], 0
  x = g.add("null", "data")
  x = g.add("_copy", "id", [x])
  x = g.add("_minus_scalar", "_minusscalar0", [x], {"scalar": 127.5})
  x = g.add("_mul_scalar", "_mulscalar0", [x], {"scalar": 0.0078125})
  x = g.prelu(g.bn(g.conv(x, "conv0", spec["stem"], 3, 1), "bn0", eps), "relu0")
  for s, (n, width) in enumerate(zip(spec["units"], spec["widths"], strict=True)):
    for u in range(n):
      name, stride = f"stage{s + 1}_unit{u + 1}", 2 if u == 0 else 1
      y = g.conv(g.bn(x, f"{name}_bn1", eps), f"{name}_conv1", width, 3, 1)
      y = g.prelu(g.bn(y, f"{name}_bn2", eps), f"{name}_relu1")
      y = g.bn(g.conv(y, f"{name}_conv2", width, 3, stride), f"{name}_bn3", eps)
      if u == 0:
        x = g.bn(g.conv(x, f"{name}_conv1sc", width, 1, 2), f"{name}_sc", eps)
      x = g.add("elemwise_add", f"_plus{adds}", [y, x])
      adds += 1
  x = g.add("Dropout", "dropout0", [g.bn(x, "bn1", eps)], {"p": 0.4})
  x = g.layer("FullyConnected", "pre_fc1", x, ["weight", "bias"], {"num_hidden": spec["emb"]})
  g.bn(x, "fc1", eps, fix=True)
  return g.nodes


def write_symbol(path, nodes: list[dict]) -> None:
  heads = [[len(nodes) - 1, 0, 0]]
  args = [i for i, n in enumerate(nodes) if n["op"] == "null"]
  doc = {"nodes": nodes, "arg_nodes": args, "heads": heads, "attrs": {}}
  with open(path, "w") as f:
    json.dump(doc, f)


def _first(text: str) -> int:
  return int(text.strip("()").split(",")[0])


def shapes(nodes: list[dict]) -> dict[str, tuple[int, ...]]:
  """{variable name: shape} of `symbol_nodes`' parameters (112x112 input)."""
  out, channels, sides = {}, {0: 3}, {0: 112}  # node 0: the data
  for i, n in enumerate(nodes):
    a, ins = n.get("attrs", {}), [j for j, _, _ in n["inputs"]]
    if not ins:
      continue
    c, side = channels[ins[0]], sides[ins[0]]
    channels[i], sides[i] = c, side
    if n["op"] == "Convolution":
      k, w = _first(a["kernel"]), int(a["num_filter"])
      out[nodes[ins[1]]["name"]] = (w, c, k, k)
      channels[i], sides[i] = w, side // _first(a["stride"])
    elif n["op"] in ("BatchNorm", "LeakyReLU"):
      for j in ins[1:]:
        out[nodes[j]["name"]] = (c,)
    elif n["op"] == "FullyConnected":
      d = int(a["num_hidden"])
      out[nodes[ins[1]]["name"]] = (d, c * side * side)
      out[nodes[ins[2]]["name"]] = (d,)
      channels[i] = d
  return out


def random_params(nodes: list[dict], seed: int = 0) -> dict[str, np.ndarray]:
  """{'arg:NAME' | 'aux:NAME': float32 array}, the running statistics as aux."""
  rng, out = np.random.default_rng(seed), {}
  for name, shape in shapes(nodes).items():
    if name.endswith("_moving_var"):
      v = rng.uniform(0.5, 2.0, shape)
    elif name.endswith("_gamma") and "relu" not in name:
      v = rng.uniform(2.0, 3.0, shape) if name == "fc1_gamma" else rng.uniform(0.6, 1.0, shape)
    elif name.endswith("_weight"):
      v = rng.normal(0, np.sqrt(1 / np.prod(shape[1:])), shape)
    else:
      v = rng.uniform(0, 0.3, shape)
    kind = "aux" if "_moving_" in name else "arg"
    out[f"{kind}:{name}"] = v.astype(np.float32)
  return out


def array_bytes(a: np.ndarray, layout: str = "v2") -> bytes:
  """One NDArray as `NDArray::Save` writes it (v2), or as the older layouts did."""
  head = {
    "v2": struct.pack("<Ii", 0xF993FAC9, 0) + struct.pack(f"<i{a.ndim}q", a.ndim, *a.shape),
    "v1": struct.pack(f"<Ii{a.ndim}q", 0xF993FAC8, a.ndim, *a.shape),
    "legacy": struct.pack(f"<I{a.ndim}I", a.ndim, *a.shape),
  }[layout]
  ctx = struct.pack("<ii", 1, 0)  # cpu(0)
  return (
    head + ctx + struct.pack("<i", FLAGS[a.dtype]) + a.astype(a.dtype.newbyteorder("<")).tobytes()
  )


def params_bytes(named: dict[str, np.ndarray], layout: str = "v2") -> bytes:
  out = struct.pack("<QQQ", 0x112, 0, len(named))
  out += b"".join(array_bytes(a, layout) for a in named.values())
  out += struct.pack("<Q", len(named))
  for name in named:
    raw = name.encode()
    out += struct.pack("<Q", len(raw)) + raw
  return out


def write_checkpoint(folder, nodes=None, named=None, layout="v2", prefix="model") -> str:
  """PREFIX-symbol.json + PREFIX-0000.params in `folder` -> the params path."""
  nodes = symbol_nodes() if nodes is None else nodes
  named = random_params(nodes) if named is None else named
  write_symbol(f"{folder}/{prefix}-symbol.json", nodes)
  path = f"{folder}/{prefix}-0000.params"
  with open(path, "wb") as f:
    f.write(params_bytes(named, layout))
  return path
