"""The MXNet reader without MXNet: the older .params layouts, float16, fix_gamma, and every
refusal of a hostile or foreign file (one line naming the file; no output; declared sizes
checked before any allocation, under a memory cap). The files are written by
tests/convert/mxnet_files.py, whose output test_mxnet_convert.py checks against MXNet's."""

import copy
import os
import struct

import numpy as np
import pytest

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax.cli import main
from exfiqa_jax.convert import mxnet_params
from exfiqa_jax.convert.files import convert_file
from exfiqa_jax.convert.mxnet_params import read_mxnet, read_params
from tests.convert.mxnet_files import (
  array_bytes,
  params_bytes,
  random_params,
  symbol_nodes,
  write_checkpoint,
  write_symbol,
)
from tests.data.test_hostile import bounded

TINY = {
  "arg:a_weight": np.arange(6, dtype=np.float32).reshape(2, 3),
  "aux:b_moving_var": np.ones(4, np.float32),
}


def _params(tmp_path, raw: bytes) -> str:
  path = tmp_path / "m-0000.params"
  path.write_bytes(raw)
  return str(path)


# Files declaring far more than they hold: read under the memory cap, in a fresh process.
BOMBS = ("count-2^60", "shape-4PiB", "name-1TiB")


def _read_refused(tmp_path, raw: bytes, message: str, capped: bool) -> None:
  """read_params refuses `raw` with `message` (a regex) in one line naming the file; `capped`:
  in a fresh interpreter whose address space allows 256 MiB more than its imports."""
  import re

  path = _params(tmp_path, raw)
  if capped:
    kind, text = bounded(
      f"read_params({path!r})", "from exfiqa_jax.convert.mxnet_params import read_params"
    )
  else:
    try:
      read_params(path)
      kind, text = "ok", ""
    except Exception as e:
      kind, text = type(e).__name__, str(e)
  assert kind == "ValueError", (kind, text)
  assert text.startswith(path + ": ") and "\n" not in text and re.search(message, text), text


def test_layouts_and_float16_read_alike(tmp_path):
  want = read_params(_params(tmp_path, params_bytes(TINY)))
  assert list(want[0]) == ["a_weight"] and list(want[1]) == ["b_moving_var"]
  np.testing.assert_array_equal(want[0]["a_weight"], TINY["arg:a_weight"])
  for layout in ("v1", "legacy"):
    got = read_params(_params(tmp_path, params_bytes(TINY, layout)))
    np.testing.assert_array_equal(got[0]["a_weight"], want[0]["a_weight"])
    np.testing.assert_array_equal(got[1]["b_moving_var"], want[1]["b_moving_var"])
  half = {**TINY, "arg:a_weight": np.array([[0.1, -2.5, 1e-3]], np.float16)}
  got = read_params(_params(tmp_path, params_bytes(half)))[0]["a_weight"]
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, half["arg:a_weight"].astype(np.float32))


def _header(count: int) -> bytes:
  return struct.pack("<QQQ", 0x112, 0, count)


def _names(*names: str) -> bytes:
  return struct.pack("<Q", len(names)) + b"".join(
    struct.pack("<Q", len(n.encode())) + n.encode() for n in names
  )


GOOD = params_bytes(TINY)
A = array_bytes(TINY["arg:a_weight"])
V2 = struct.pack("<Ii", 0xF993FAC9, 0)
CTX = struct.pack("<ii", 1, 0)


@pytest.mark.parametrize(
  "raw,message",
  [
    (b"", r"the file is empty"),
    (GOOD[:10], r"the header needs 16 bytes at byte 0, the file has 10 left"),
    (struct.pack("<QQQ", 0x113, 0, 0), r"magic 0x113, expected 0x112"),
    (
      (_header(1) + A)[:70],
      r"array 0's \(2, 3\) float32 data needs 24 bytes at byte 64, the file has 6 left",
    ),
    (GOOD[:-3], r"name 1 needs 16 bytes at byte \d+, the file has 13 left"),
    (GOOD + b"\0\0\0\0", r"4 bytes after the names list"),
    # 2^60 arrays declared in a 24-byte file.
    (_header(1 << 60), r"1,152,921,504,606,846,976 arrays needs"),
    # One array declaring 2^40 x 2^20 float32 (4 PiB) in a 100-byte file.
    (
      _header(1) + V2 + struct.pack("<i2q", 2, 1 << 40, 1 << 20) + CTX + struct.pack("<i", 0),
      r"array 0's \(1099511627776, 1048576\) float32 data needs 4,611,686,018,427,387,904 bytes",
    ),
    (_header(1) + V2 + struct.pack("<i", 100) + bytes(64), r"array 0 .* has 100 dimensions"),
    (_header(1) + V2 + struct.pack("<i2q", 2, -1, 3), r"negative dimensions \(-1, 3\)"),
    (
      _header(1) + struct.pack("<I", 0xDEADBEEF) + bytes(64),
      r"starts with 0xDEADBEEF, no NDArray magic",
    ),
    (_header(1) + struct.pack("<Ii", 0xF993FAC9, 1) + bytes(64), r"storage type 1, not dense"),
    (
      _header(1) + V2 + struct.pack("<iq", 1, 2) + struct.pack("<ii", 9, 0) + bytes(64),
      r"unknown context \(device type 9, id 0\)",
    ),
    (
      _header(1) + V2 + struct.pack("<iq", 1, 2) + CTX + struct.pack("<i", 99) + bytes(64),
      r"array 0 has unknown dtype flag 99",
    ),
    (
      _header(1) + array_bytes(np.zeros(2, np.float64)) + _names("arg:x_weight"),
      r"array 0 has dtype float64; weights are float32 or float16",
    ),
    (_header(1) + A + _names(), r"1 arrays but 0 names"),
    (_header(1) + A + struct.pack("<QQ", 1, 1 << 40), r"name 0 declares 1,099,511,627,776 bytes"),
    (_header(2) + A + A + _names("arg:a_weight", "aux:a_weight"), r"'a_weight' is stored twice"),
    (_header(1) + A + _names("a_weight"), r"array name 'a_weight' is not 'arg:NAME' or 'aux:NAME'"),
  ],
  ids=[
    "empty",
    "short-header",
    "list-magic",
    "cut-in-data",
    "cut-in-names",
    "trailing",
    "count-2^60",
    "shape-4PiB",
    "ndim-100",
    "negative-dim",
    "array-magic",
    "sparse",
    "context",
    "dtype-99",
    "float64",
    "no-names",
    "name-1TiB",
    "duplicate",
    "no-prefix",
  ],
)
def test_hostile_params_refused_within_bound(request, tmp_path, raw, message):
  _read_refused(tmp_path, raw, message, request.node.callspec.id in BOMBS)


def test_checkpoint_converts_with_fix_gamma_and_graph_eps(tmp_path, capsys):
  nodes = symbol_nodes()
  for n in nodes:  # the graph's eps, whatever it is, is the model's
    if n["op"] == "BatchNorm":
      n["attrs"]["eps"] = "0.001"
  named = random_params(nodes, seed=4)
  path = write_checkpoint(tmp_path, nodes, named)
  config, sd = read_mxnet(path)
  assert (config.family, config.bn_eps, config.input_scale) == ("arcface-mxnet", 1e-3, "mxnet")
  assert np.abs(named["arg:fc1_gamma"] - 1).min() > 0.5
  np.testing.assert_array_equal(sd["features.weight"], np.ones(24, np.float32))
  # Not fix_gamma: stored gammas are kept, under the PyTorch names.
  np.testing.assert_array_equal(sd["bn2.weight"], named["arg:bn1_gamma"])
  np.testing.assert_array_equal(sd["layer2.1.prelu.weight"], named["arg:stage2_unit2_relu1_gamma"])
  sc = named["aux:stage4_unit1_sc_moving_var"]
  np.testing.assert_array_equal(sd["layer4.0.downsample.1.running_var"], sc)
  np.testing.assert_array_equal(sd["conv1.weight"], named["arg:conv0_weight"])
  np.testing.assert_array_equal(sd["fc.weight"], named["arg:pre_fc1_weight"])
  assert (
    convert_file(
      str(tmp_path / "model"), str(tmp_path / "ckpt"), family="arcface-mxnet", check=True
    )
    == config
  )
  assert "| embedding |" in capsys.readouterr().out  # --verify: the PyTorch iResNet agrees
  for layout in ("v1", "legacy"):
    os.makedirs(tmp_path / layout)
    other = write_checkpoint(tmp_path / layout, nodes, named, layout)
    got = read_mxnet(other)
    assert got[0] == config and all(np.array_equal(got[1][k], v) for k, v in sd.items())


def _refused(tmp_path, match, nodes=None, named=None, src="model", error=ValueError):
  """convert_file refuses the checkpoint with `match`, leaving no DST."""
  write_checkpoint(tmp_path, nodes, named)
  before = sorted(os.listdir(tmp_path))
  with pytest.raises(error, match=match):
    convert_file(str(tmp_path / src), str(tmp_path / "dst"), family="arcface-mxnet")
  assert sorted(os.listdir(tmp_path)) == before


def _edit(**by_name):
  """symbol_nodes() with the named nodes updated (a None value deletes the key)."""
  nodes = copy.deepcopy(symbol_nodes())
  for n in nodes:
    for k, v in by_name.get(n["name"], {}).items():
      if v is None:
        n.pop(k)
      elif k == "attrs":
        n["attrs"] = {**n.get("attrs", {}), **v}
      else:
        n[k] = v
  return nodes


NOT_IR = r"model-symbol\.json: not insightface's LResNet-IR \(fresnet\.py unit3, output E\)"


@pytest.mark.parametrize(
  "edit,message",
  [
    (
      {"relu0": {"op": "Activation", "attrs": {"act_type": "relu"}}},
      r"node \d+ 'relu0' \(Activation\): LeakyReLU expected here",
    ),
    (
      {"stage2_unit1_relu1": {"attrs": {"act_type": "leaky"}}},
      r"'stage2_unit1_relu1' \(LeakyReLU\): act_type='leaky', not 'prelu'",
    ),
    (
      {"conv0": {"attrs": {"kernel": "(7, 7)", "stride": "(2, 2)", "pad": "(3, 3)"}}},
      r"'conv0' \(Convolution\): kernel='\(7, 7\)'",
    ),
    (
      {"stage1_unit1_conv2": {"attrs": {"stride": "(1, 1)"}}},
      r"'stage1_unit1_conv2' \(Convolution\): stride='\(1, 1\)'",
    ),
    (
      {"stage3_unit1_conv1": {"attrs": {"no_bias": "False"}}},
      r"'stage3_unit1_conv1' \(Convolution\): no_bias='False'",
    ),
    (
      {"_mulscalar0": {"attrs": {"scalar": "0.00784313725490196"}}},
      r"normalisation \(x - 127\.5\) \* 0\.00784313725490196, not \(x - 127\.5\) \* 0\.0078125",
    ),
    (
      {"stage4_unit2_bn2": {"attrs": {"eps": "0.001"}}},
      r"BatchNorm eps differ across layers \(\[2e-05, 0\.001\]\)",
    ),
    ({"bn0": {"attrs": {"axis": "3"}}}, r"'bn0' \(BatchNorm\): axis='3'"),
    ({"fc1": {"name": "embedding"}}, r"0 operator nodes named 'fc1'"),
    (
      {"dropout0": {"attrs": {"mode": "always"}}},
      r"'dropout0' \(Dropout\): mode='always': dropout at inference",
    ),
    (
      {"conv0": {"inputs": [[0, 0, 0], [4, 0, 0]]}},
      r"at node 0 'data' \(null\): _mul_scalar or _MulScalar expected here",
    ),
    (
      {"_plus3": {"inputs": [[999, 0, 0], [1, 0, 0]]}},
      r"not an MXNet symbol file: node \d+ \(_plus3\) has input \[999, 0",
    ),
  ],
  ids=[
    "relu",
    "leaky",
    "version-input-0",
    "stride",
    "conv-bias",
    "scale-127.5",
    "eps-mixed",
    "bn-axis",
    "no-fc1",
    "dropout-always",
    "no-normalisation",
    "forward-input",
  ],
)
def test_symbol_not_lresnet_ir_refused(tmp_path, edit, message):
  nodes = _edit(**edit)
  named = random_params(symbol_nodes())
  _refused(tmp_path, message, nodes, named)
  if "not an MXNet symbol file" not in message:
    with pytest.raises(ValueError, match=NOT_IR):
      read_mxnet(str(tmp_path / "model"))


def test_output_f_and_se_units_refused(tmp_path):
  # fc_type "F": bn1 -> Dropout -> FullyConnected named fc1, no BatchNorm on the embedding.
  nodes = symbol_nodes()
  i = next(k for k, n in enumerate(nodes) if n["name"] == "pre_fc1")
  nodes = nodes[: i + 1]
  nodes[i]["name"] = "fc1"
  _refused(tmp_path, r"'fc1' \(FullyConnected\): BatchNorm expected here", nodes, {})
  # An SE gate on a unit's residual branch (fresnet.py version_se 1): bn3 * sigmoid(...).
  nodes = symbol_nodes()
  i = next(k for k, n in enumerate(nodes) if n["name"] == "_plus0")
  bn3 = nodes[i]["inputs"][0][0]
  nodes.insert(i, {"op": "broadcast_mul", "name": "se", "inputs": [[bn3, 0, 0], [bn3, 0, 0]]})
  for n in nodes[i + 1 :]:
    n["inputs"] = [[j + (j >= i), o, v] for j, o, v in n["inputs"]]
  nodes[i + 1]["inputs"][0] = [i, 0, 0]
  _refused(
    tmp_path,
    r"'se' \(broadcast_mul\): BatchNorm expected here",
    nodes,
    random_params(symbol_nodes()),
  )


def test_params_not_matching_the_graph_refused(tmp_path):
  named = random_params(symbol_nodes())
  missing = {k: v for k, v in named.items() if k != "aux:fc1_moving_var"}
  _refused(
    tmp_path, r"model-0000\.params: .*missing \['aux:fc1_moving_var'\], unused \[\]", named=missing
  )
  extra = {**named, "arg:fc7_weight": np.zeros((10, 24), np.float32)}
  _refused(tmp_path, r"missing \[\], unused \['fc7_weight'\]", named=extra)
  as_aux = {("aux:bn0_gamma" if k == "arg:bn0_gamma" else k): v for k, v in named.items()}
  _refused(tmp_path, r"missing \['arg:bn0_gamma'\], unused \['bn0_gamma'\]", named=as_aux)
  shape = {**named, "arg:stage1_unit1_conv2_weight": np.zeros((8, 8, 1, 1), np.float32)}
  want = r"key 'layer1\.0\.conv2\.weight' has shape \(8, 8, 1, 1\), expected \(8, 8, 3, 3\)"
  _refused(tmp_path, want, named=shape)
  nan = {**named, "arg:bn0_beta": np.full(8, np.nan, np.float32)}
  _refused(tmp_path, r"NaN or infinite weights in \['bn1\.bias'\]", named=nan)


def test_file_refusals(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError, match=r"model: not an MXNet checkpoint .* found no PREFIX"):
    read_mxnet(str(tmp_path / "model"))
  write_checkpoint(tmp_path)
  (tmp_path / "model-0007.params").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match=r"found 2: \["):
    read_mxnet(str(tmp_path / "model"))
  os.remove(tmp_path / "model-symbol.json")
  with pytest.raises(FileNotFoundError, match=r"model-symbol\.json: no such file \(the graph of "):
    read_mxnet(str(tmp_path / "model-0000.params"))
  (tmp_path / "model-symbol.json").write_text("{nodes: 1")
  with pytest.raises(
    ValueError, match=r"model-symbol\.json: not an MXNet symbol file: invalid JSON"
  ):
    read_mxnet(str(tmp_path / "model-0000.params"))
  (tmp_path / "model-symbol.json").write_text("[" * 100_000 + "]" * 100_000)
  with pytest.raises(ValueError, match=r"not an MXNet symbol file: invalid JSON \(RecursionError"):
    read_mxnet(str(tmp_path / "model-0000.params"))
  write_symbol(tmp_path / "model-symbol.json", _edit(bn0={"inputs": 5}))
  with pytest.raises(ValueError, match=r"node \d+ \(bn0\) has no 'inputs' list"):
    read_mxnet(str(tmp_path / "model-0000.params"))
  write_symbol(tmp_path / "model-symbol.json", symbol_nodes())
  monkeypatch.setattr(mxnet_params, "MAX_SYMBOL_BYTES", 1000)
  with pytest.raises(
    ValueError, match=r"model-symbol\.json: [\d,]+ bytes, over 1,000 for a symbol"
  ):
    read_mxnet(str(tmp_path / "model-0000.params"))


def test_cli_refusal_is_one_line_and_writes_nothing(tmp_path, capsys):
  write_checkpoint(tmp_path, _edit(relu0={"attrs": {"act_type": "elu"}}))
  before = sorted(os.listdir(tmp_path))
  argv = ["convert", "--family", "arcface-mxnet", str(tmp_path / "model"), str(tmp_path / "dst")]
  assert main(argv) != 0
  err = capsys.readouterr().err.strip()
  assert "\n" not in err and "model-symbol.json: not insightface's LResNet-IR" in err, err
  assert "act_type='elu', not 'prelu'" in err and sorted(os.listdir(tmp_path)) == before


def test_mxnet_input_scale_is_the_graphs(tmp_path):
  """fr_input of the family is fresnet.py's in-graph (data - 127.5) * 0.0078125, on RGB."""
  from exfiqa_jax.models.registry import fr_input

  config, _ = read_mxnet(write_checkpoint(tmp_path))
  imgs = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
  want = (imgs.astype(np.float32) - np.float32(127.5)) * np.float32(0.0078125)
  np.testing.assert_array_equal(np.asarray(fr_input(imgs, "rgb", config)), want)
  np.testing.assert_array_equal(np.asarray(fr_input(imgs[..., ::-1], "bgr", config)), want)


def test_from_torch_keeps_what_the_graph_states(tmp_path):
  """In memory too: the read release's own eps (here 1e-3) wins over the family's 2e-5, and
  the variables are those convert_file writes."""
  from exfiqa_jax.convert import FAMILIES, from_torch
  from exfiqa_jax.models.checkpoint import load

  nodes = symbol_nodes()
  for n in nodes:
    if n["op"] == "BatchNorm":
      n["attrs"]["eps"] = "0.001"
  path = write_checkpoint(tmp_path, nodes, random_params(nodes, seed=5))
  config, params, stats = from_torch(FAMILIES["arcface-mxnet"].read(path), family="arcface-mxnet")
  assert (config.family, config.bn_eps, config.input_scale) == ("arcface-mxnet", 1e-3, "mxnet")
  assert convert_file(path, str(tmp_path / "ckpt"), family="arcface-mxnet") == config
  got = load(str(tmp_path / "ckpt"))
  np.testing.assert_array_equal(
    np.asarray(got.params["fc"]["kernel"][...]), np.asarray(params["fc"]["kernel"][...])
  )
