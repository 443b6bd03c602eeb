"""GraFIQs (gradient magnitudes of the BatchNorm-statistics score) on the FR backbones.

Protocol of jankolf/GraFIQs `backbones/bn.py` (`BN_Model.get_BN`) and
`extract_grafiqs.py`, one image at a time (a batch of one, as the extractor runs):

    score = (1 / N) sum_{n=1..N} [ MSE(mu_n, running_mean_n) + MSE(var_n, running_var_n) ]

over the N BatchNorm2d layers of the backbone (every one, in forward order: the
stem's, each block's and each downsample's, and the final one before the flatten;
not the embedding BatchNorm1d), where mu_n and var_n are the per-channel mean and
biased variance of that BatchNorm's input over the image's spatial positions
(`input.mean([0, 2, 3])`, `input.var([0, 2, 3], unbiased=False)` with batch 1) and
MSE is the mean over channels of the squared difference. Every BatchNorm runs in
inference mode (running statistics), unfolded. The gradient of the score is taken
with respect to the network input (`image`) and to the outputs of the four stages
(`block1` .. `block4`: `layer1..4` of the iResNet, the last block of each stage of
the IR); the upstream quality is the sum of the absolute gradient, lower = better.

Sign: the tables take higher = better, so the quality returned here is the NEGATED
sum, `-sum |grad|` (<= 0; a smaller gradient gives a larger quality).

Per-image: `jax.vmap` over single images of `jax.grad`, so an image's value does not
depend on the batch it is computed in. Cost: one forward and one backward pass per
image (about 3x a plain forward).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from exfiqa_jax.models.iresnet import IResNet
from exfiqa_jax.models.irse import IRBackbone

F32 = jnp.float32
VARIANTS = ("image", "block1", "block2", "block3", "block4")

# The extractor's input rule (GraFIQs `extract_grafiqs.py`): images read with
# cv2.imread (BGR) and kept BGR unless `--bgr2rgb` is given (default off); resized to
# 112x112 (a no-op on aligned 112x112 crops); ToDtype(scale=True) then
# Normalize(0.5, 0.5): (x / 255 - 0.5) / 0.5; no flip. In `registry.fr_input` terms:
# model_order "bgr", input_scale "half".
PREPROCESS = {"channel_order": "bgr", "input_scale": "half", "flip": False}


def _stats_term(x: jax.Array, bn: nnx.BatchNorm) -> jax.Array:
  """One BatchNorm2d's term: x [H, W, C] of one image -> MSE(mean) + MSE(var), float32 []."""
  mean = jnp.mean(x, axis=(0, 1))
  var = jnp.mean(jnp.square(x - mean), axis=(0, 1))  # biased, two-pass
  return jnp.mean(jnp.square(mean - bn.mean[...])) + jnp.mean(jnp.square(var - bn.var[...]))


class _Recorder:
  """Applies BatchNorms unfolded and collects their terms (one image, batch axis of 1)."""

  def __init__(self):
    self.terms = []

  def __call__(self, bn: nnx.BatchNorm, x: jax.Array) -> jax.Array:
    self.terms.append(_stats_term(x[0], bn))
    return bn(x)


def _iresnet_block(block, x, rec):
  out = block.conv1(rec(block.bn1, x))
  out = block.conv2(block.prelu(rec(block.bn2, out)))
  out = rec(block.bn3, out)
  if block.downsample is None:
    return out + x
  conv, bn = block.downsample
  return out + rec(bn, conv(x))


def _irse_block(block, x, rec):
  if block.shortcut_layer is None:
    shortcut = x[:, :: block.stride, :: block.stride]
  else:
    conv, bn = block.shortcut_layer
    shortcut = rec(bn, conv(x))
  bn1, conv1, prelu, conv2, bn2 = block.res_layer
  out = conv2(prelu(conv1(rec(bn1, x))))
  return rec(bn2, out) + shortcut


def stages(model: nnx.Module) -> list[list]:
  """The blocks of each stage: the iResNet's layer1..N; the IR's flat body split
  where a stride-2 block starts a stage."""
  if isinstance(model, IResNet):
    return [list(getattr(model, f"layer{s + 1}")) for s in range(model.num_stages)]
  if isinstance(model, IRBackbone):
    out = []
    for block in model.body:
      if block.stride != 1 or not out:
        out.append([])
      out[-1].append(block)
    return out
  raise TypeError(f"GraFIQs needs an IResNet or IRBackbone, got {type(model).__name__}")


def bn_score(model: nnx.Module, x: jax.Array, deltas: tuple[jax.Array, ...]) -> jax.Array:
  """`BN_Model.get_BN` of one image x [S, S, 3]; deltas [H_s, W_s, C_s] are added to
  the stage outputs (zeros: their gradient is the gradient w.r.t. those outputs)."""
  rec = _Recorder()
  y = x[None]
  if isinstance(model, IResNet):
    y = model.prelu(rec(model.bn1, model.conv1(y)))
    block_fn = _iresnet_block
  else:
    conv, bn, prelu = model.input_layer
    y = prelu(rec(bn, conv(y)))
    block_fn = _irse_block
  for s, blocks in enumerate(stages(model)):
    for block in blocks:
      y = block_fn(block, y, rec)
    y = y + deltas[s][None]
  final = model.bn2 if isinstance(model, IResNet) else model.output_layer[0]
  rec(final, y)  # the last BatchNorm2d's input statistics; the rest adds no term
  return sum(rec.terms) / len(rec.terms)


def _stage_shapes(model, x):
  def shapes(xi):
    return bn_score_outputs(model, xi)

  return jax.eval_shape(shapes, x[0])


def bn_score_outputs(model, x):
  """The stage outputs of one image (for their shapes)."""
  y = x[None]
  if isinstance(model, IResNet):
    y = model.prelu(model.bn1(model.conv1(y)))
  else:
    conv, bn, prelu = model.input_layer
    y = prelu(bn(conv(y)))
  outs = []
  for blocks in stages(model):
    for block in blocks:
      y = block(y)
    outs.append(y[0])
  return outs


@functools.partial(jax.jit, static_argnames=("graphdef", "variants"))
def _grafiqs(graphdef, state, x, *, variants):
  model = nnx.merge(graphdef, state)
  shapes = _stage_shapes(model, x)

  def one(xi):
    deltas = tuple(jnp.zeros(s.shape, F32) for s in shapes)
    gx, gd = jax.grad(lambda a, d: bn_score(model, a, d), argnums=(0, 1))(xi, deltas)
    grads = {"image": gx, **{f"block{s + 1}": g for s, g in enumerate(gd)}}
    return {v: -jnp.sum(jnp.abs(grads[v])) for v in variants}

  return jax.vmap(one)(x)


def grafiqs_quality(
  model: nnx.Module, x: jax.Array, variants: tuple[str, ...] = VARIANTS
) -> dict[str, jax.Array]:
  """GraFIQs qualities {variant: float32 [B]} = -sum |d score / d input or stage output|
  (higher = better, <= 0) of prepared images x float32 [B, S, S, 3] (`PREPROCESS`).

  model: an IResNet or IRBackbone; variants: any of "image", "block1" .. "blockN"
  (N: the model's stage count, 4 for the released ones). Checked before any work.
  """
  x = jnp.asarray(x)
  n = len(stages(model))
  known = ("image", *(f"block{s + 1}" for s in range(n)))
  variants = tuple(variants)
  bad = [v for v in variants if v not in known]
  if bad or not variants:
    raise ValueError(
      f"grafiqs: unknown variant(s) {bad or '(none given)'}; one of {', '.join(known)}"
    )
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"grafiqs: x must be [B, S, S, 3], got shape {tuple(x.shape)}")
  graphdef, state = nnx.split(model)
  return _grafiqs(graphdef, state, x.astype(F32), variants=variants)
