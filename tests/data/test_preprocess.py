import numpy as np
import pytest

from exfiqa_jax import preprocess


def test_normalises_to_minus_one_one_rgb_and_bgr():
  img = np.zeros((1, 112, 112, 3), np.uint8)
  img[..., 0], img[..., 1], img[..., 2] = 0, 255, 51  # R, G, B
  rgb = np.asarray(preprocess(img))
  np.testing.assert_allclose(rgb[0, 0, 0], [-1.0, 1.0, (51 / 255 - 0.5) / 0.5], rtol=1e-6)
  bgr = np.asarray(preprocess(img, channel_order="bgr"))  # input given as B, G, R
  np.testing.assert_allclose(bgr[0, 0, 0], rgb[0, 0, 0, ::-1], rtol=1e-6)


@pytest.mark.parametrize(
  "shape,dtype,msg",
  [
    ((112, 112, 3), np.uint8, r"must be \[B, 112, 112, 3\]; got shape \(112, 112, 3\)"),
    ((2, 112, 112, 1), np.uint8, r"3 channels .* got 1"),
    ((2, 3, 112, 112), np.uint8, r"3 channels .* got 112"),
    ((2, 100, 112, 3), np.uint8, r"112x112 aligned crops; got 100x112"),
    ((2, 112, 112, 3), np.float32, r"uint8 in \[0, 255\]; got dtype float32"),
  ],
)
def test_rejects_wrong_input(shape, dtype, msg):
  with pytest.raises(ValueError, match=msg):
    preprocess(np.zeros(shape, dtype))


def test_rejects_unknown_channel_order():
  with pytest.raises(ValueError, match=r"channel_order must be one of \('rgb', 'bgr'\); got 'rbg'"):
    preprocess(np.zeros((1, 112, 112, 3), np.uint8), channel_order="rbg")
