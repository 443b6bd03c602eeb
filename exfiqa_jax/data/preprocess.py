"""uint8 face crops -> the model's normalised input, `(x / 255 - 0.5) / 0.5`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

CHANNEL_ORDERS = ("rgb", "bgr")


def check_channel_order(order: str, who: str = "", hint: str = "") -> None:
  """Raises ValueError unless `order` is one of CHANNEL_ORDERS; `who` names the
  component that needs it, `hint` is appended advice."""
  if order not in CHANNEL_ORDERS:
    need = f"{who} needs channel_order in" if who else "channel_order must be one of"
    raise ValueError(f"{need} {CHANNEL_ORDERS}; got {order!r}{hint}")


def check_images(images, image_size: int = 112) -> None:
  """Raises ValueError unless images is uint8 [B, image_size, image_size, 3]."""
  shape = tuple(np.shape(images))
  dtype = images.dtype if hasattr(images, "dtype") else np.asarray(images).dtype
  if len(shape) != 4:
    raise ValueError(f"images must be [B, {image_size}, {image_size}, 3]; got shape {shape}")
  if shape[3] != 3:
    raise ValueError(f"images must have 3 channels (last axis); got {shape[3]} in shape {shape}")
  if shape[1:3] != (image_size, image_size):
    raise ValueError(
      f"images must be {image_size}x{image_size} aligned crops; "
      f"got {shape[1]}x{shape[2]} in shape {shape}"
    )
  if dtype != np.uint8:
    raise ValueError(f"images must be uint8 in [0, 255]; got dtype {dtype}")


def normalize(images: jax.Array, channel_order: str = "rgb") -> jax.Array:
  """uint8 [B, H, W, 3] -> float32 [B, H, W, 3] in [-1, 1], RGB. Traceable."""
  check_channel_order(channel_order)
  x = images.astype(jnp.float32)
  if channel_order == "bgr":
    x = x[..., ::-1]
  return (x / 255.0 - 0.5) / 0.5


def preprocess(images, image_size: int = 112, channel_order: str = "rgb") -> jax.Array:
  """Checks, then normalises, a batch of uint8 face crops."""
  check_images(images, image_size)
  return normalize(jnp.asarray(images), channel_order)
