"""SER-FIQ (stochastic embedding robustness) on the face-recognition backbones.

Protocol of pterhoer/FaceImageQuality `face_image_quality.py` (`get_embedding_quality`):
the backbone runs once per image up to its last feature map (after the final
BatchNorm2d, flattened); then T stochastic passes of the layers after it, each
with dropout (p = 0.5, active) on the flattened features, the `fc` Linear, the
embedding BatchNorm1d and an L2 normalisation. With e_1 .. e_T the T unit
embeddings of one image,

    d = mean_{i < j} ||e_i - e_j||_2          (T (T - 1) / 2 pairs: the strict upper
                                               triangle, `np.triu_indices(T, k=1)`)
    quality = 2 / (1 + exp(d))                in (0, 1]; higher = better

(the mean over i < j equals the mean over all ordered pairs i != j; no other scaling).
Dropout is the inverted kind (Keras `Dropout(0.5)(x, training=True)`): kept features
are multiplied by 1 / (1 - p), dropped ones are 0.

The upstream head's Keras `BatchNormalization()` is never given the released
statistics: with its initial ones it scales every dimension by 1/sqrt(1 + 1e-3),
which the L2 normalisation removes, so the upstream embedding BatchNorm is in
effect absent. Here the head is the backbone's own: `fc` then its trained
embedding BatchNorm (`features` in the iResNet, `output_layer/4` in the IR), as
the issue asks; `head_bn=False` leaves that BatchNorm out (the upstream effect).

Cost: one backbone forward per image (the FR embedding's cost, up to the fc) plus
T head passes: T x (F x D) multiply-adds per image for the fc (F = C x g x g
flattened features, 25088 x 512 on the released iResNets: 1.3 GFLOP per image at
T = 100, about 5% of an iresnet100 forward) and a T x T Gram matrix.

Masks: `masks[t, b, f]` keeps feature f of image b in pass t. The feature axis f is
in the order of the Flax models' flattened map, (h, w, c) (NHWC); PyTorch's is
(c, h, w) (a reference permutes them). Drawn from a key, image b's masks come from
`fold_in(fold_in(key, image_ids[b]), t)` alone (t the pass), so an image gets the
same masks in any batch, batch size, position or device count.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from einops import rearrange
from flax import nnx

from exfiqa_jax.models.iresnet import IResNet
from exfiqa_jax.models.irse import IRBackbone

F32 = jnp.float32
PASSES = 100  # T of the upstream demo ("T=100 (default) is a good choice")
DROPOUT = 0.5  # the upstream head's Dropout(0.5)
PASS_CHUNK = 10  # head passes per step (bounds the masks held at once to 10 x B x F)


def _pass_masks(key, ids, t, features, p):
  """bool [B, features]: pass t's keep-masks of images `ids` (uint32 [B])."""

  def one(i):
    return jax.random.bernoulli(
      jax.random.fold_in(jax.random.fold_in(key, i), t), 1.0 - p, (features,)
    )

  return jax.vmap(one)(ids)


@functools.partial(jax.jit, static_argnames=("passes", "features", "p"))
def serfiq_masks(
  key: jax.Array, image_ids: jax.Array, passes: int, features: int, p: float = DROPOUT
) -> jax.Array:
  """Keep-masks bool [passes, B, features] of images `image_ids` (uint32 [B], global
  indices): image b's mask in pass t from `fold_in(fold_in(key, image_ids[b]), t)`
  alone; True with probability 1 - p."""
  ids = jnp.asarray(image_ids, jnp.uint32)
  return jax.vmap(lambda t: _pass_masks(key, ids, t, features, p))(
    jnp.arange(passes, dtype=jnp.uint32)
  )


def trunk(model: nnx.Module, x: jax.Array) -> jax.Array:
  """The backbone up to the flattened last feature map: float32 [B, S, S, 3] -> [B, F],
  F in (h, w, c) order (the rows of the model's fc kernel)."""
  if isinstance(model, IResNet):
    y = model.prelu(model.bn1(model.conv1(x)))
    for s in range(model.num_stages):
      for block in getattr(model, f"layer{s + 1}"):
        y = block(y)
    y = model.bn2(y)
  elif isinstance(model, IRBackbone):
    conv, bn, prelu = model.input_layer
    y = prelu(bn(conv(x)))
    for block in model.body:
      y = block(y)
    y = model.output_layer[0](y)
  else:
    raise TypeError(f"SER-FIQ needs an IResNet or IRBackbone, got {type(model).__name__}")
  return rearrange(y, "b h w c -> b (h w c)")


def head_layers(model: nnx.Module):
  """(fc, embedding BatchNorm) of an FR backbone."""
  if isinstance(model, IResNet):
    return model.fc, model.features
  if isinstance(model, IRBackbone):
    return model.output_layer[3], model.output_layer[4]
  raise TypeError(f"SER-FIQ needs an IResNet or IRBackbone, got {type(model).__name__}")


def robustness(emb: jax.Array) -> jax.Array:
  """Unit embeddings [T, D] -> 2 / (1 + exp(mean_{i<j} ||e_i - e_j||)), float32 []."""
  t = emb.shape[0]
  sq = jnp.sum(emb * emb, axis=-1)
  gram = jnp.einsum("id,jd->ij", emb, emb, precision=jax.lax.Precision.HIGHEST)
  d2 = sq[:, None] + sq[None, :] - 2.0 * gram
  upper = np.triu(np.ones((t, t), bool), k=1)
  d = jnp.sqrt(jnp.where(upper, jnp.maximum(d2, 0.0), 0.0))
  mean = jnp.sum(d) / (t * (t - 1) / 2)
  return 2.0 / (1.0 + jnp.exp(mean))


def _check(model, x, passes, p, key, image_ids, masks) -> None:
  if not isinstance(passes, (int, np.integer)) or isinstance(passes, bool) or passes < 2:
    raise ValueError(f"serfiq: passes must be an integer >= 2 (pairs of passes), got {passes!r}")
  if not (isinstance(p, (float, int, np.floating)) and 0.0 < float(p) < 1.0):
    raise ValueError(f"serfiq: dropout p must lie in (0, 1), got {p!r}")
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"serfiq: x must be [B, S, S, 3], got shape {tuple(x.shape)}")
  fc, _ = head_layers(model)
  b, f = x.shape[0], fc.kernel.shape[0]
  if masks is not None:
    if key is not None:
      raise ValueError("serfiq: give either masks or key, not both")
    if tuple(masks.shape) != (passes, b, f):
      raise ValueError(
        f"serfiq: masks must be [passes, B, F] = {(passes, b, f)}, got {tuple(masks.shape)}"
      )
    return
  if key is None:
    raise ValueError("serfiq: give a jax.random key (with image_ids) or explicit masks")
  if image_ids is None:
    raise ValueError(
      "serfiq: image_ids [B] (global image indices) are required with a key, so that an "
      "image's masks do not depend on its batch"
    )
  if tuple(np.shape(image_ids)) != (b,):
    raise ValueError(f"serfiq: image_ids must be [B] = [{b}], got {tuple(np.shape(image_ids))}")


def _chunk(passes: int) -> int:
  """Passes per step: the largest divisor of `passes` up to PASS_CHUNK."""
  return max(d for d in range(1, min(passes, PASS_CHUNK) + 1) if passes % d == 0)


@functools.partial(jax.jit, static_argnames=("graphdef", "passes", "p", "head_bn"))
def _serfiq(graphdef, state, x, key, ids, masks, *, passes, p, head_bn):
  model = nnx.merge(graphdef, state)
  feats = trunk(model, x)  # [B, F]
  fc, bn = head_layers(model)
  scale = 1.0 / (1.0 - p)

  def embed(m):  # keep-masks [c, B, F] -> unit embeddings [c, B, D]
    h = fc(jnp.where(m.astype(bool), feats[None] * scale, 0.0))  # one batched matmul
    if head_bn:
      h = bn(h)
    return h * jax.lax.rsqrt(jnp.maximum(jnp.sum(h * h, -1, keepdims=True), 1e-12))

  # The passes in steps of c (a scan over the pass axis, never over the batch axis,
  # which may be sharded): the masks of all T passes of a batch (T x B x F) at once
  # would take gigabytes.
  c = _chunk(passes)
  if masks is None:
    ts = jnp.arange(passes, dtype=jnp.uint32).reshape(passes // c, c)
    f = feats.shape[1]

    def step(_, tc):
      return None, embed(jax.vmap(lambda t: _pass_masks(key, ids, t, f, p))(tc))

    _, emb = jax.lax.scan(step, None, ts)
  else:
    _, emb = jax.lax.scan(
      lambda _, m: (None, embed(m)), None, masks.reshape(passes // c, c, *masks.shape[1:])
    )
  emb = emb.reshape(passes, *emb.shape[2:])  # [T, B, D]
  return jax.vmap(robustness, in_axes=1)(emb)


def serfiq_quality(
  model: nnx.Module,
  x: jax.Array,
  *,
  passes: int = PASSES,
  p: float = DROPOUT,
  key: jax.Array | None = None,
  image_ids: jax.Array | None = None,
  masks: jax.Array | None = None,
  head_bn: bool = True,
) -> jax.Array:
  """SER-FIQ qualities float32 [B] (higher = better, in (0, 1]) of prepared images.

  model: an IResNet or IRBackbone; x: float32 [B, S, S, 3] as `registry.fr_input`
  gives. Masks: explicit bool/float keep-masks [passes, B, F] (F in (h, w, c) order),
  or drawn from `key` with `image_ids` uint32 [B] (`serfiq_masks`). Cost: the
  backbone once per image + `passes` head passes (module docstring). Jitted; the
  arguments are checked before any work.
  """
  x = jnp.asarray(x)
  _check(model, x, passes, p, key, image_ids, masks)
  graphdef, state = nnx.split(model)
  ids = None if image_ids is None else jnp.asarray(image_ids, jnp.uint32)
  m = None if masks is None else jnp.asarray(masks)
  return _serfiq(
    graphdef, state, x.astype(F32), key, ids, m, passes=int(passes), p=float(p), head_bn=head_bn
  )
