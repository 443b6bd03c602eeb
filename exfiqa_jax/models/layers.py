"""Building blocks of every network here (ViT-FIQA and the face-recognition backbones),
in Flax NNX, named as in the PyTorch code.

Matmuls and convolutions take their inputs in the compute `dtype` and accumulate
in float32 (`preferred_element_type`), so bfloat16 is fast on CPU and GPU alike;
every activation between them, the norms, PReLU and the softmax stay float32.

PyTorch defaults, stated where they differ from Flax's:
- `nn.LayerNorm` eps 1e-5 (Flax: 1e-6); variance two-pass, as PyTorch computes it.
- `nn.Conv2d(k=3, padding=1)` pads one pixel on every side, whatever the
  stride; Flax's "SAME" pads stride-2 convolutions asymmetrically (0 before,
  1 after on even sizes) and would shift every stride-2 output by a pixel.
  Padding here is always explicit and symmetric.
- `nn.PReLU(C)` has one slope per channel (initialised 0.25); `nnx.PReLU` one
  scalar. The slope is kept under PyTorch's name, `weight`.
- `nn.BatchNorm2d/1d` eps defaults to 1e-5 (Flax: 1e-5 too), momentum 0.1
  (Flax's 0.9 means the same; unused at inference); ViT-FIQA sets 2e-5, each
  face-recognition family its own.

Inference-time BatchNorm folding: a BatchNorm that directly follows a
convolution is applied as that convolution's per-channel kernel scale and bias
(`Conv.__call__(x, dtype, bn=...)`), computed in float32 from the stored
parameters at trace time (the stored tree is unchanged). It saves one pass over
the activation per folded BatchNorm; the outputs differ from the unfolded
order of operations by float32 rounding only.

Winograd convolutions on the CPU: jaxlib's CPU convolution upcasts bfloat16 operands to
float32 (its kernel library has no bfloat16 convolution, in 0.10.2 and 0.12.1), while
its bfloat16 matmuls run on the CPU's bfloat16 instructions at about twice the float32
rate. A 3x3 stride-1 convolution with at least `WINOGRAD_MIN_CHANNELS` input channels
(`WINOGRAD_MIN_CHANNELS_BF16` in bfloat16, on maps up to `WINOGRAD_MAX_MAP_BF16` a side)
on the CPU backend therefore runs as Winograd F(2x2, 3x3): 16 matmuls in the compute
dtype (float32 accumulation) on 2x2-output tiles, 2.25x fewer multiplies, the transforms
in float32 (`winograd_conv3x3`). It pays most in bfloat16 and less in float32 (where
only the multiplies are saved), and most when the rows of a pass are few (the
face-recognition models run 8 at a time on CPU, `registry.FR_CPU_MICRO_BATCH`): with 64
channels (the largest maps) the transforms' memory traffic ate the gain in float32 and
the library convolution stays there; in bfloat16 it pays from 64 channels. A 1x1
convolution runs as a subsampling and one matmul on the CPU (`use_pointwise_dot`), for
the same reason, and a bfloat16 3x3 stride-2 convolution on a map of at most
`TAPS_S2_MAX_MAP` as nine tap matmuls on the map's four phases (`use_taps_s2`,
`taps_conv3x3_s2`); a stem convolution (an RGB input, at most `PATCHES_MAX_CHANNELS`) as
patches and one matmul (`use_patches`). Other backends are unchanged;
`conv_algorithm(winograd=False)` turns all four off for what is traced inside it.
Float32 outputs move by float32 rounding only (about 1e-6 of the output scale per
convolution).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

F32 = jnp.float32
LN_EPS = 1e-5  # PyTorch nn.LayerNorm default; Flax's default is 1e-6.
BN_EPS = 2e-5  # ViT-FIQA's BatchNorm1d eps; both frameworks default to 1e-5.


def matmul(x: jax.Array, w: jax.Array, dtype, out=F32) -> jax.Array:
  """x: [..., I] @ w: [I, O] -> float32 [..., O], inputs cast to `dtype`, accumulated in
  float32; `out`: the product's type before the float32 result (bfloat16: a measurement
  option of `winograd_conv3x3`)."""
  y = jnp.einsum("...i,io->...o", x.astype(dtype), w.astype(dtype), preferred_element_type=out)
  return y.astype(F32)


class Dense(nnx.Module):
  """PyTorch `nn.Linear` with the kernel stored transposed, [in, out]."""

  def __init__(self, din: int, dout: int, *, use_bias: bool = True, rngs: nnx.Rngs):
    init = nnx.initializers.lecun_normal()
    self.kernel = nnx.Param(init(rngs.params(), (din, dout), F32))
    self.bias = nnx.Param(jnp.zeros((dout,), F32)) if use_bias else None

  def __call__(self, x: jax.Array, dtype=F32) -> jax.Array:
    y = matmul(x, self.kernel[...], dtype)
    return y if self.bias is None else y + self.bias[...]


def layer_norm(din: int, rngs: nnx.Rngs) -> nnx.LayerNorm:
  # Two-pass variance, as PyTorch computes it.
  return nnx.LayerNorm(din, epsilon=LN_EPS, use_fast_variance=False, rngs=rngs)


def batch_norm(din: int, rngs: nnx.Rngs, eps: float = BN_EPS, affine: bool = True):
  """BatchNorm1d/2d (over the last, channel axis) in inference mode: running statistics.

  `eps` defaults to ViT-FIQA's 2e-5 (not PyTorch's 1e-5); `affine=False` is
  `nn.BatchNorm1d(C, affine=False)`: running statistics only. Momentum is unused
  at inference; Flax's momentum is 1 - PyTorch's (0.1).
  """
  return nnx.BatchNorm(
    din,
    epsilon=eps,
    momentum=0.9,
    use_running_average=True,
    use_fast_variance=False,
    use_scale=affine,
    use_bias=affine,
    rngs=rngs,
  )


def bn_affine(bn: nnx.BatchNorm) -> tuple[jax.Array, jax.Array]:
  """An inference-mode BatchNorm as y = x * scale + shift; float32 [C] each."""
  scale = jax.lax.rsqrt(bn.var[...] + bn.epsilon)
  if bn.scale is not None:
    scale = scale * bn.scale[...]
  shift = -bn.mean[...] * scale
  if bn.bias is not None:
    shift = shift + bn.bias[...]
  return scale, shift


# Measured at 16 rows per pass (the face-recognition models' CPU micro-batches): faster from
# 28x28x128 on, slower at 56x56x64 and 112x112x64 (at 64 rows: even at 28x28x128).
WINOGRAD_MIN_CHANNELS = 128
# bfloat16 from 64 channels: whole iresnet100 / IR-101 at batch 64, 8 rows a pass, at rest
# (docs/performance.md): 13.8 -> 17.3 and 15.7 -> 17.8 images/s, ranges apart; the library
# convolution has no bfloat16 kernel, so the 64-channel maps gain there as they do not in
# float32.
WINOGRAD_MIN_CHANNELS_BF16 = 64
# ... on maps up to 56x56: at 112x112x64 (one convolution of each network) the library's
# convolution took 28 ms for 8 rows against Winograd's 63 (its 16 transformed maps of 8
# images, 150 MB, fall out of cache); whole bfloat16 networks without it there ran 0-11%
# faster in four runs (docs/performance.md, "Fifth pass").
WINOGRAD_MAX_MAP_BF16 = 56
# bfloat16 3x3 stride-2 convolutions on maps up to 56x56 with at least 64 input channels
# run as nine tap matmuls (`taps_conv3x3_s2`): at 8 rows a pass 1.2-2.3x the library's
# convolution on 56x56x128, 28x28x256 and 14x14x512 inputs, slower on 112x112x64 (two
# runs, docs/performance.md); float32 stays on the library's convolution (no faster).
TAPS_S2_MAX_MAP = 56
# 3x3 stride-1 convolutions with at most 4 input channels (the RGB stems, 112x112x3 -> 64)
# run as patches and one matmul (`patches_conv3x3`): at 8 rows a pass 1.1-1.5x the
# library's convolution, in float32 and bfloat16 alike (two runs, docs/performance.md).
PATCHES_MAX_CHANNELS = 4
_WINOGRAD = contextvars.ContextVar("winograd", default=True)


class _Tuning(NamedTuple):
  """Measurement switches of `conv_algorithm`; the defaults are the rules'."""

  min_channels: int | None = None  # None: min_channels(dtype)
  max_map_bf16: int = WINOGRAD_MAX_MAP_BF16  # the largest bfloat16 map through Winograd
  tile: int = 2  # Winograd F(2x2, 3x3); 4: F(4x4, 3x3)
  taps_s2: bool = True  # the stride-2 tap matmuls (`use_taps_s2`)
  patches: bool = True  # the stem patches (`use_patches`)


_WINOGRAD_TUNING = contextvars.ContextVar("winograd_tuning", default=_Tuning())


@contextlib.contextmanager
def conv_algorithm(
  winograd: bool,
  min_channels: int | None = None,
  tile: int = 2,
  taps_s2: bool = True,
  patches: bool = True,
  max_map_bf16: int = WINOGRAD_MAX_MAP_BF16,
):
  """Within it, tracing uses the CPU convolution rules (Winograd, 1x1 dots, stride-2 tap
  matmuls, stem patches) or not (default: used).

  `min_channels` replaces `WINOGRAD_MIN_CHANNELS`, `tile=4` takes F(4x4, 3x3)
  instead of F(2x2, 3x3) (`winograd_conv3x3_f4`), `taps_s2=False` keeps stride-2
  convolutions and `patches=False` stems on the library's, `max_map_bf16` replaces
  `WINOGRAD_MAX_MAP_BF16` (options for measurement,
  not the default). Read at trace time: a function jitted and traced before keeps its
  choice.
  """
  if tile not in (2, 4):
    raise ValueError(f"conv_algorithm: tile must be 2 or 4, got {tile}")
  token = _WINOGRAD.set(winograd)
  tuning = _WINOGRAD_TUNING.set(_Tuning(min_channels, max_map_bf16, tile, taps_s2, patches))
  try:
    yield
  finally:
    _WINOGRAD_TUNING.reset(tuning)
    _WINOGRAD.reset(token)


def min_channels(dtype) -> int:
  """The input channels from which Winograd pays: WINOGRAD_MIN_CHANNELS_BF16 for bfloat16,
  WINOGRAD_MIN_CHANNELS otherwise."""
  bf16 = jnp.dtype(dtype) == jnp.dtype(jnp.bfloat16)
  return WINOGRAD_MIN_CHANNELS_BF16 if bf16 else WINOGRAD_MIN_CHANNELS


def use_winograd(k: int, stride: int, din: int, dtype, size: tuple[int, int] | None = None) -> bool:
  """The rule of `Conv`: 3x3, stride 1, din >= min_channels(dtype), float32 or bfloat16
  (bfloat16 on maps of `size` up to WINOGRAD_MAX_MAP_BF16 a side), the CPU backend."""
  tuning = _WINOGRAD_TUNING.get()
  bf16 = jnp.dtype(dtype) == jnp.dtype(jnp.bfloat16)
  return (
    _WINOGRAD.get()
    and k == 3
    and stride == 1
    and din >= (tuning.min_channels or min_channels(dtype))
    and jnp.dtype(dtype) in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
    and not (bf16 and size is not None and max(size) > tuning.max_map_bf16)
    and jax.default_backend() == "cpu"
  )


def use_taps_s2(k: int, stride: int, din: int, size: tuple[int, int], dtype) -> bool:
  """The stride-2 rule of `Conv`: 3x3, stride 2, bfloat16, din >=
  WINOGRAD_MIN_CHANNELS_BF16, an even map of at most TAPS_S2_MAX_MAP on each side, the
  CPU backend."""
  h, w = size
  return (
    _WINOGRAD.get()
    and _WINOGRAD_TUNING.get().taps_s2
    and k == 3
    and stride == 2
    and din >= WINOGRAD_MIN_CHANNELS_BF16
    and h % 2 == w % 2 == 0
    and max(h, w) <= TAPS_S2_MAX_MAP
    and jnp.dtype(dtype) == jnp.dtype(jnp.bfloat16)
    and jax.default_backend() == "cpu"
  )


def use_patches(k: int, stride: int, din: int, dtype) -> bool:
  """The stem rule of `Conv`: 3x3, stride 1, at most PATCHES_MAX_CHANNELS input channels
  (an RGB stem), float32 or bfloat16, the CPU backend, the rules on (`conv_algorithm`)."""
  return (
    _WINOGRAD.get()
    and _WINOGRAD_TUNING.get().patches
    and k == 3
    and stride == 1
    and din <= PATCHES_MAX_CHANNELS
    and jnp.dtype(dtype) in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
    and jax.default_backend() == "cpu"
  )


def use_pointwise_dot(dtype) -> bool:
  """A 1x1 convolution (padding 0) as a subsampling and a matmul in `dtype` with float32
  accumulation, on the CPU backend while Winograd is on (`conv_algorithm`): the
  library's convolution upcasts bfloat16 operands to float32, its matmul does not."""
  return (
    _WINOGRAD.get()
    and jnp.dtype(dtype) in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))
    and jax.default_backend() == "cpu"
  )


def _bt(d: list) -> list:
  """Winograd F(2, 3) input transform B^T d along one axis: 4 rows -> 4."""
  return [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]


def _at(m: list) -> list:
  """Output transform A^T m: 4 -> 2."""
  return [m[0] + m[1] + m[2], m[1] - m[2] - m[3]]


def winograd_conv3x3(x: jax.Array, kernel: jax.Array, dtype, out=F32) -> jax.Array:
  """3x3 convolution, stride 1, zero padding 1, as Winograd F(2x2, 3x3).

  x: float32 [B, H, W, C]; kernel: float32 [3, 3, C, O] (HWIO) -> float32 [B, H, W, O].
  Tiles of 4x4 inputs give 2x2 outputs (odd H or W padded by one more row or
  column, cropped after). The transforms run in float32; the 16 transformed
  inputs [B, H/2, W/2, C] and kernels G g G^T [C, O] enter 16 separate matmuls in
  `dtype` with float32 accumulation (separate: one stacked batched matmul would
  copy its operands into one array, which cost more than it saved). `out`: the
  matmuls' output type (bfloat16 halves the output transform's reads; an option).
  """
  b, h, w, c = x.shape
  th, tw = (h + 1) // 2, (w + 1) // 2
  xp = jnp.pad(x.astype(F32), ((0, 0), (1, 2 * th + 1 - h), (1, 2 * tw + 1 - w), (0, 0)))
  # r[:, p, a, q, e] = xp[:, 2p + a, 2q + e]: tile row u of tile t is (p, a) = (t + u // 2, u % 2)
  r = xp.reshape(b, th + 1, 2, tw + 1, 2, c)
  rows = _bt([r[:, u // 2 : u // 2 + th, u % 2] for u in range(4)])  # 4 x [b, th, tw + 1, 2, c]
  g = kernel.astype(F32)
  gr = [g[0], (g[0] + g[1] + g[2]) / 2, (g[0] - g[1] + g[2]) / 2, g[2]]  # G g: 4 x [3, C, O]
  m = []
  for alpha in range(4):
    v = _bt([rows[alpha][:, :, u // 2 : u // 2 + tw, u % 2] for u in range(4)])
    gk = gr[alpha]
    u_ = [gk[0], (gk[0] + gk[1] + gk[2]) / 2, (gk[0] - gk[1] + gk[2]) / 2, gk[2]]  # (G g G^T)
    m.append([matmul(v[beta], u_[beta], dtype, out) for beta in range(4)])  # [b, th, tw, O]
  cols = [_at([m[alpha][beta] for alpha in range(4)]) for beta in range(4)]  # 4 x 2
  y = [_at([cols[beta][i] for beta in range(4)]) for i in range(2)]  # y[i][j]: output (i, j)
  y = jnp.stack([jnp.stack(y[i], 3) for i in range(2)], 2)  # [b, th, 2, tw, 2, O]
  return y.reshape(b, 2 * th, 2 * tw, -1)[:, :h, :w]


# Winograd F(4x4, 3x3) (Lavin and Gray's points 0, +-1, +-2, infinity): 6x6 input tiles
# give 4x4 outputs, 36 matmuls, 4x fewer multiplies than the direct convolution.
_BT4 = (
  (4, 0, -5, 0, 1, 0),
  (0, -4, -4, 1, 1, 0),
  (0, 4, -4, -1, 1, 0),
  (0, -2, -1, 2, 1, 0),
  (0, 2, -1, -2, 1, 0),
  (0, 4, 0, -5, 0, 1),
)
_G4 = (
  (1 / 4, 0, 0),
  (-1 / 6, -1 / 6, -1 / 6),
  (-1 / 6, 1 / 6, -1 / 6),
  (1 / 24, 1 / 12, 1 / 6),
  (1 / 24, -1 / 12, 1 / 6),
  (0, 0, 1),
)
_AT4 = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


def _combine(matrix, xs: list) -> list:
  """[sum_j matrix[i][j] * xs[j] for each row i], zero terms skipped."""
  out = []
  for row in matrix:
    terms = [
      x if c == 1 else -x if c == -1 else c * x for c, x in zip(row, xs, strict=True) if c != 0
    ]
    out.append(sum(terms[1:], terms[0]))
  return out


def winograd_conv3x3_f4(x: jax.Array, kernel: jax.Array, dtype) -> jax.Array:
  """3x3 convolution, stride 1, zero padding 1, as Winograd F(4x4, 3x3).

  x: float32 [B, H, W, C]; kernel: float32 [3, 3, C, O] (HWIO) -> float32 [B, H, W, O].
  As `winograd_conv3x3` with 6x6 input tiles and 4x4 output tiles (H and W padded up
  to multiples of 4, cropped after): 36 transformed inputs [B, H/4, W/4, C] and
  kernels G g G^T [C, O] in 36 matmuls in `dtype` (float32 accumulation), 4x fewer
  multiplies and 2.25 transformed values per output (F(2x2): 4). The larger
  transform coefficients cost precision: float32 about 1e-6 of the output scale,
  bfloat16 about 3x F(2x2)'s error (tests/models/test_fr_winograd.py).
  """
  b, h, w, c = x.shape
  th, tw = -(-h // 4), -(-w // 4)
  xp = jnp.pad(x.astype(F32), ((0, 0), (1, 4 * th + 3 - h), (1, 4 * tw + 3 - w), (0, 0)))
  # r[:, p, a, q, e] = xp[:, 4p + a, 4q + e]: tile row u of tile t is (t + u // 4, u % 4)
  r = xp.reshape(b, th + 1, 4, tw + 1, 4, c)
  rows = _combine(_BT4, [r[:, u // 4 : u // 4 + th, u % 4] for u in range(6)])
  g = kernel.astype(F32)
  gr = _combine(_G4, [g[0], g[1], g[2]])  # G g: 6 x [3, C, O]
  m = []
  for alpha in range(6):
    v = _combine(_BT4, [rows[alpha][:, :, u // 4 : u // 4 + tw, u % 4] for u in range(6)])
    u_ = _combine(_G4, [gr[alpha][0], gr[alpha][1], gr[alpha][2]])  # (G g G^T)[alpha]
    m.append([matmul(v[beta], u_[beta], dtype) for beta in range(6)])  # [b, th, tw, O] f32
  cols = [_combine(_AT4, [m[alpha][beta] for alpha in range(6)]) for beta in range(6)]
  y = [_combine(_AT4, [cols[beta][i] for beta in range(6)]) for i in range(4)]
  y = jnp.stack([jnp.stack(y[i], 3) for i in range(4)], 2)  # [b, th, 4, tw, 4, O]
  return y.reshape(b, 4 * th, 4 * tw, -1)[:, :h, :w]


def patches_conv3x3(x: jax.Array, kernel: jax.Array, dtype, stride: int = 1) -> jax.Array:
  """3x3 convolution, zero padding 1, stride 1 or 2, as patches and one matmul.

  x: float32 [B, H, W, C]; kernel: float32 [3, 3, C, O] (HWIO) -> float32
  [B, ceil(H/s), ceil(W/s), O]. The 9 taps' (subsampled) views are concatenated along
  the channels in `dtype` (9x the input at stride 1, 2.25x at stride 2) and meet the
  kernel [9 C, O] in one matmul with float32 accumulation: the CPU path of a stem
  convolution (few input channels, `use_patches`); at stride 2 an option for measurement.
  """
  b, h, w, c = x.shape
  ho, wo = -(-h // stride), -(-w // stride)
  pad_h, pad_w = stride * (ho - 1) + 2 - h, stride * (wo - 1) + 2 - w
  xp = jnp.pad(x.astype(dtype), ((0, 0), (1, pad_h), (1, pad_w), (0, 0)))
  s = stride
  taps = [xp[:, i : i + s * ho : s, j : j + s * wo : s] for i in range(3) for j in range(3)]
  return matmul(jnp.concatenate(taps, -1), kernel.reshape(9 * c, -1), dtype)


def taps_conv3x3_s2(x: jax.Array, kernel: jax.Array, dtype) -> jax.Array:
  """3x3 convolution, stride 2, zero padding 1, on an even map, as nine tap matmuls.

  x: float32 [B, H, W, C], H and W even; kernel: float32 [3, 3, C, O] (HWIO) -> float32
  [B, H/2, W/2, O]. Output (i, j) reads input rows 2i-1, 2i, 2i+1: row tap 1 is the even
  rows, taps 0 and 2 the odd rows shifted down by one and not shifted (likewise for
  columns). Each tap is a view of one of the four phases [B, H/2, W/2, C] (in `dtype`),
  one matmul with its [C, O] kernel (float32 accumulation); the nine float32 products
  are summed in tap order.
  """
  b, h, w, c = x.shape
  if h % 2 or w % 2:
    raise ValueError(f"taps_conv3x3_s2: the map must be even, got {h}x{w}")
  phases = x.astype(dtype).reshape(b, h // 2, 2, w // 2, 2, c)
  y = None
  for i in range(3):
    for j in range(3):
      tap = phases[:, :, 0 if i == 1 else 1, :, 0 if j == 1 else 1]
      if i == 0:  # row 2i-1: the odd rows one down, a zero row on top
        tap = jnp.pad(tap, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, : h // 2]
      if j == 0:
        tap = jnp.pad(tap, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, : w // 2]
      term = matmul(tap, kernel[i, j], dtype)
      y = term if y is None else y + term
  return y


class Conv(nnx.Module):
  """`nn.Conv2d(din, dout, k, stride, padding, bias=False)`; kernel [k, k, din, dout] (HWIO)."""

  def __init__(self, din: int, dout: int, k: int, stride: int, padding: int, *, rngs: nnx.Rngs):
    init = nnx.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=3)
    self.kernel = nnx.Param(init(rngs.params(), (k, k, din, dout), F32))
    self.stride, self.padding = stride, padding

  def __call__(self, x: jax.Array, dtype=F32, bn: nnx.BatchNorm | None = None) -> jax.Array:
    """x: [B, H, W, din] -> float32 [B, H', W', dout]; then `bn` (folded) if given.

    3x3 stride-1 convolutions with many input channels run as Winograd on the CPU
    (`use_winograd`), bfloat16 stride-2 ones on maps up to 56x56 as tap matmuls
    (`use_taps_s2`), RGB stems as patches and one matmul (`use_patches`)."""
    p, kernel = self.padding, self.kernel[...]
    if bn is not None:
      scale, shift = bn_affine(bn)
      kernel = kernel * scale  # per output channel, the last kernel axis
    k, din, s = kernel.shape[0], kernel.shape[2], self.stride
    if p == 1 and use_winograd(k, s, din, dtype, x.shape[1:3]):
      tile = _WINOGRAD_TUNING.get().tile
      y = (winograd_conv3x3 if tile == 2 else winograd_conv3x3_f4)(x, kernel, dtype)
    elif p == 1 and use_patches(k, s, din, dtype):
      y = patches_conv3x3(x, kernel, dtype)
    elif p == 1 and use_taps_s2(k, s, din, x.shape[1:3], dtype):
      y = taps_conv3x3_s2(x, kernel, dtype)
    elif k == 1 and p == 0 and use_pointwise_dot(dtype):
      y = matmul(x[:, ::s, ::s] if s > 1 else x, kernel[0, 0], dtype)
    else:
      y = jax.lax.conv_general_dilated(
        x.astype(dtype),
        kernel.astype(dtype),
        window_strides=(s, s),
        padding=((p, p), (p, p)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        preferred_element_type=F32,
      )
    return y if bn is None else y + shift


def conv_bn(conv: Conv, bn: nnx.BatchNorm, x: jax.Array, dtype=F32, fold: bool = True):
  """`bn(conv(x))`, the BatchNorm folded into the convolution when `fold`."""
  return conv(x, dtype, bn=bn) if fold else bn(conv(x, dtype))


def conv3x3(din: int, dout: int, stride: int, rngs: nnx.Rngs) -> Conv:
  return Conv(din, dout, 3, stride, 1, rngs=rngs)  # PyTorch padding=1, not "SAME"


def conv1x1(din: int, dout: int, stride: int, rngs: nnx.Rngs) -> Conv:
  return Conv(din, dout, 1, stride, 0, rngs=rngs)


class PReLU(nnx.Module):
  """`nn.PReLU(C)`: x if x >= 0 else weight[c] * x, one slope per channel (last axis)."""

  def __init__(self, channels: int):
    self.weight = nnx.Param(jnp.full((channels,), 0.25, F32))  # PyTorch's initial slope

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, self.weight[...] * x)
