"""Run by a Python 3.8 interpreter with mxnet 1.9.1 (EXFIQA_MXNET_PYTHON), never imported by
the suite: builds a small LResNet-IR symbol the way insightface's MXNet recognition code does
(`symbol/fresnet.py` `resnet()` with version_input 1, `residual_unit_v3` without SE, PReLU as
LeakyReLU act_type "prelu", `symbol_utils.get_fc1` with fc_type "E"), fills it with random
weights, saves it with `mx.model.save_checkpoint` and writes the reference `fc1_output`
embeddings of random uint8 images, fed as CR-FIQA's `ArcFaceModel.py` feeds them (NCHW float
of the 0..255 pixels; the graph normalises inside).

    python3.8 mxnet_reference.py OUT_DIR SPEC_JSON

SPEC_JSON: {"stem": 8, "widths": [...], "units": [...], "emb": 24, "eps": 2e-5, "seed": 0,
"images": 4}. Writes OUT_DIR/model-symbol.json,
OUT_DIR/model-0000.params, OUT_DIR/images.npy (uint8 [N, 112, 112, 3], the channels in the
order fed) and OUT_DIR/embeddings.npy (float32 [N, emb]).
"""

import json
import os
import sys

import mxnet as mx
import numpy as np

BN_MOM = 0.9


def act(data, name):
  return mx.sym.LeakyReLU(data=data, act_type="prelu", name=name)


def unit3(data, num_filter, stride, dim_match, name, eps):
  """fresnet.py residual_unit_v3, bottle_neck False, version_se 0."""
  bn = dict(fix_gamma=False, eps=eps, momentum=BN_MOM)
  bn1 = mx.sym.BatchNorm(data=data, name=name + "_bn1", **bn)
  conv1 = mx.sym.Convolution(
    data=bn1, num_filter=num_filter, kernel=(3, 3), stride=(1, 1), pad=(1, 1), no_bias=True,
    workspace=256, name=name + "_conv1",
  )  # fmt: skip
  bn2 = mx.sym.BatchNorm(data=conv1, name=name + "_bn2", **bn)
  act1 = act(bn2, name + "_relu1")
  conv2 = mx.sym.Convolution(
    data=act1, num_filter=num_filter, kernel=(3, 3), stride=stride, pad=(1, 1), no_bias=True,
    workspace=256, name=name + "_conv2",
  )  # fmt: skip
  bn3 = mx.sym.BatchNorm(data=conv2, name=name + "_bn3", **bn)
  if dim_match:
    shortcut = data
  else:
    conv1sc = mx.sym.Convolution(
      data=data, num_filter=num_filter, kernel=(1, 1), stride=stride, no_bias=True,
      workspace=256, name=name + "_conv1sc",
    )  # fmt: skip
    shortcut = mx.sym.BatchNorm(data=conv1sc, name=name + "_sc", **bn)
  return bn3 + shortcut


def symbol(spec):
  """fresnet.py resnet() with version_input 1, then get_fc1(..., "E")."""
  eps = spec["eps"]
  data = mx.sym.Variable(name="data")
  data = mx.sym.identity(data=data, name="id")
  data = data - 127.5
  data = data * 0.0078125
  body = mx.sym.Convolution(
    data=data, num_filter=spec["stem"], kernel=(3, 3), stride=(1, 1), pad=(1, 1), no_bias=True,
    name="conv0", workspace=256,
  )  # fmt: skip
  body = mx.sym.BatchNorm(data=body, fix_gamma=False, eps=eps, momentum=BN_MOM, name="bn0")
  body = act(body, "relu0")
  for i, (n, width) in enumerate(zip(spec["units"], spec["widths"])):  # noqa: B905 (3.8)
    body = unit3(body, width, (2, 2), False, "stage%d_unit%d" % (i + 1, 1), eps)
    for j in range(n - 1):
      body = unit3(body, width, (1, 1), True, "stage%d_unit%d" % (i + 1, j + 2), eps)
  body = mx.sym.BatchNorm(data=body, fix_gamma=False, eps=eps, momentum=BN_MOM, name="bn1")
  body = mx.sym.Dropout(data=body, p=0.4)
  fc1 = mx.sym.FullyConnected(data=body, num_hidden=spec["emb"], name="pre_fc1")
  return mx.sym.BatchNorm(data=fc1, fix_gamma=True, eps=eps, momentum=BN_MOM, name="fc1")


def random_params(sym, rng):
  """Random conv/fc weights, BatchNorm affine and running stats, PReLU slopes; the fix_gamma
  BatchNorm's stored gamma is far from 1 (MXNet ignores it)."""
  arg_shapes, _, aux_shapes = sym.infer_shape(data=(1, 3, 112, 112))
  args, auxs = {}, {}
  for name, shape in zip(sym.list_arguments(), arg_shapes):  # noqa: B905
    if name == "data":
      continue
    if name.endswith("_weight"):
      fan_in = int(np.prod(shape[1:]))
      v = rng.normal(0, np.sqrt(1.0 / fan_in), shape)
    elif name.endswith("_gamma") and "relu" in name:
      v = rng.uniform(0.0, 0.5, shape)
    elif name.endswith("_gamma"):
      v = rng.uniform(2.0, 3.0, shape) if name == "fc1_gamma" else rng.uniform(0.6, 1.0, shape)
    else:  # _beta, _bias
      v = rng.normal(0, 0.1, shape)
    args[name] = mx.nd.array(v.astype(np.float32))
  for name, shape in zip(sym.list_auxiliary_states(), aux_shapes):  # noqa: B905
    if name.endswith("_moving_mean"):
      v = rng.normal(0, 0.1, shape)
    elif name == "fc1_moving_var":  # small: eps 2e-5 against 1e-5 shows in the output
      v = rng.uniform(1e-3, 1e-2, shape)
    else:
      v = rng.uniform(0.5, 2.0, shape)
    auxs[name] = mx.nd.array(v.astype(np.float32))
  return args, auxs


def main():
  out, spec = sys.argv[1], json.loads(sys.argv[2])
  rng = np.random.default_rng(spec["seed"])
  sym = symbol(spec)
  args, auxs = random_params(sym, rng)
  prefix = os.path.join(out, "model")
  mx.model.save_checkpoint(prefix, 0, sym, args, auxs)
  # CR-FIQA feature_extraction/model/ArcFaceModel.py: load_checkpoint, fc1_output, a Module
  # bound for inference, the HWC image transposed to CHW, forward(is_train=False).
  sym2, arg2, aux2 = mx.model.load_checkpoint(prefix, 0)
  emb_sym = sym2.get_internals()["fc1_output"]
  n = spec["images"]
  images = rng.integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)
  model = mx.mod.Module(symbol=emb_sym, context=mx.cpu(), label_names=None)
  model.bind(data_shapes=[("data", (n, 3, 112, 112))], for_training=False)
  model.set_params(arg2, aux2)
  batch = mx.io.DataBatch(data=(mx.nd.array(images.transpose(0, 3, 1, 2)),))
  model.forward(batch, is_train=False)
  emb = model.get_outputs()[0].asnumpy().astype(np.float32)
  np.save(os.path.join(out, "images.npy"), images)
  np.save(os.path.join(out, "embeddings.npy"), emb)
  print(json.dumps({"mxnet": mx.__version__, "embedding_shape": list(emb.shape)}))


if __name__ == "__main__":
  main()
