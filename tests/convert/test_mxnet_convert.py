"""`exfiqa convert --family arcface-mxnet` against real MXNet: mxnet 1.9.1 in its own Python 3.8
venv (EXFIQA_MXNET_PYTHON, made by .ci/run) builds a small LResNet-IR the way insightface's
fresnet.py does, saves it with `mx.model.save_checkpoint` and computes `fc1_output` as CR-FIQA's
ArcFaceModel.py does; the project converts the files without MXNet and must agree within
2e-4 abs + 2e-4 rel. Without that venv the tests skip with the reason; under CI=true they fail.
"""

import dataclasses
import json
import os
import subprocess

import numpy as np
import pytest

from tests.helpers import import_torch

torch = import_torch()

from exfiqa_jax import abstract_variables, apply
from exfiqa_jax.cli import main
from exfiqa_jax.convert import FAMILIES
from exfiqa_jax.convert.core import variables
from exfiqa_jax.convert.mxnet_params import read_mxnet, read_params
from exfiqa_jax.models.checkpoint import load
from exfiqa_jax.models.registry import fr_input
from tests.convert.mxnet_files import SPEC, params_bytes, symbol_nodes

HERE = os.path.dirname(os.path.abspath(__file__))
ATOL = RTOL = 2e-4


def mxnet_python() -> str:
  """The venv's interpreter; a skip (a failure under CI=true) with the reason without it."""
  path = os.environ.get("EXFIQA_MXNET_PYTHON", "")
  reason = (
    f"EXFIQA_MXNET_PYTHON={path!r} is not an executable"
    if path
    else "EXFIQA_MXNET_PYTHON is not set (.ci/run makes a Python 3.8 venv with mxnet==1.9.1 "
    "and numpy<1.24 and sets it)"
  )
  if not (path and os.access(path, os.X_OK)):
    if os.environ.get("CI") == "true":
      pytest.fail(f"CI needs the MXNet reference: {reason}")
    pytest.skip(reason)
  return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The folder holding MXNet's model-symbol.json, model-0000.params, images, embeddings."""
  python = mxnet_python()
  out = tmp_path_factory.mktemp("mxnet")
  spec = {**SPEC, "seed": 3, "images": 5}
  r = subprocess.run(
    [python, os.path.join(HERE, "mxnet_reference.py"), str(out), json.dumps(spec)],
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  info = json.loads(r.stdout.strip().splitlines()[-1])
  assert info["mxnet"] == "1.9.1" and info["embedding_shape"] == [5, SPEC["emb"]]
  return out


def _embed(config, sd, images):
  params, stats = variables(FAMILIES["arcface-mxnet"], sd, config)
  graphdef = abstract_variables(config)[0]
  return np.asarray(apply(graphdef, params, stats, fr_input(images, "rgb", config)))


def test_converted_mxnet_release_matches_mxnet(reference, tmp_path, capsys):
  images = np.load(reference / "images.npy")
  want = np.load(reference / "embeddings.npy")
  assert (
    main(["convert", "--family", "arcface-mxnet", str(reference / "model"), str(tmp_path / "a")])
    == 0
  )
  assert "wrote" in capsys.readouterr().out
  config, graphdef, params, stats = load(str(tmp_path / "a"))
  assert (config.family, config.bn_eps, config.input_scale, config.channel_order) == (
    "arcface-mxnet", 2e-5, "mxnet", "rgb"
  )  # fmt: skip
  assert (config.layers, config.widths, config.stem_width) == ((1, 2, 1, 2), (8, 16, 24, 32), 8)
  assert (config.embedding_size, config.image_size) == (24, 112)
  got = np.asarray(apply(graphdef, params, stats, fr_input(images, "rgb", config)))
  gap = np.abs(got - want)
  print(f"MXNet parity: max |diff| {gap.max():.3g}, max |ref| {np.abs(want).max():.3g}")
  np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
  assert np.abs(want).max() > 1  # a real signal, not a vanishing one

  # The params path names the same checkpoint.
  c2, sd = read_mxnet(str(reference / "model-0000.params"))
  assert c2 == config
  # Each fact the converter takes from the graph matters beyond the tolerance:
  args, _ = read_params(str(reference / "model-0000.params"))
  assert np.abs(args["fc1_gamma"] - 1).min() > 0.5  # stored far from 1; MXNet ignores it
  np.testing.assert_array_equal(sd["features.weight"], np.ones(24, np.float32))
  wrong = {
    "stored fc1 gamma": (config, {**sd, "features.weight": args["fc1_gamma"]}),
    "PyTorch's eps 1e-5": (dataclasses.replace(config, bn_eps=1e-5), sd),
    "(x/255 - 0.5)/0.5": (dataclasses.replace(config, input_scale="half"), sd),
  }
  for what, (c, s) in wrong.items():
    off = np.abs(_embed(c, s, images) - want) - (ATOL + RTOL * np.abs(want))
    assert off.max() > 0, f"{what} is not told apart from MXNet's output"


def test_numpy_writer_makes_mxnets_files(reference):
  """The no-MXNet refusal tests write their files with tests/convert/mxnet_files.py: its graph
  is MXNet's node for node and its .params writer gives MXNet's bytes."""
  real = json.loads((reference / "model-symbol.json").read_text())["nodes"]

  def ops(nodes):
    return [
      (n["op"], n["name"], n["inputs"], n.get("attrs") if n["op"] != "null" else None)
      for n in nodes
    ]

  assert ops(symbol_nodes(SPEC)) == ops(real)
  args, auxs = read_params(str(reference / "model-0000.params"))
  named = {**{f"arg:{k}": v for k, v in args.items()}, **{f"aux:{k}": v for k, v in auxs.items()}}
  assert params_bytes(named) == (reference / "model-0000.params").read_bytes()
