"""Face-recognition backbone configuration, and what each released family fixes.

    config = FRConfig.for_family("magface", layers=(3, 13, 30, 3))   # iresnet100, eps 2e-5, BGR

A checkpoint's weights give the architecture and its sizes; they cannot tell
the BatchNorm eps (not stored in a state_dict), nor the channel order and
input scaling the network was trained on. Those come from the family: the
values below are read from each release's model definition and its own
evaluation code.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, NamedTuple

from exfiqa_jax.models import bounds as B

ARCHS = ("iresnet", "irse")
# "half": (x / 255 - 0.5) / 0.5, in [-1, 1]; "unit": x / 255, in [0, 1]; "mxnet":
# (x - 127.5) * 0.0078125 = (x - 127.5) / 128, in [-0.996, 0.996], what insightface's MXNet
# symbols do inside their graph (fresnet.py: data - 127.5, then * 0.0078125).
INPUT_SCALES = ("half", "unit", "mxnet")
# Blocks per stage of the released iResNet depths (insightface `iresnet.py`).
IRESNET_DEPTHS = {
  18: (2, 2, 2, 2),
  34: (3, 4, 6, 3),
  50: (3, 4, 14, 3),
  100: (3, 13, 30, 3),
  200: (6, 26, 60, 6),
}


class Release(NamedTuple):
  arch: str  # "iresnet" (insightface IBasicBlock) or "irse" (CurricularFace model_irse.py, IR)
  bn_eps: float  # every BatchNorm's eps: PyTorch's default is 1e-5, MagFace sets 2e-5
  channel_order: str  # the order of the network's input channels in its release's evaluation
  input_scale: str  # one of INPUT_SCALES
  where: str  # the release files these values are read from


RELEASES = {
  "arcface": Release(
    "iresnet", 1e-5, "rgb", "half", "insightface arcface_torch backbones/iresnet.py, inference.py"
  ),
  "elasticface": Release("iresnet", 1e-5, "rgb", "half", "ElasticFace backbones/iresnet.py, eval"),
  "magface": Release(
    "iresnet", 2e-5, "bgr", "unit", "MagFace models/iresnet.py, inference/gen_feat.py (cv2, /255)"
  ),
  "curricularface": Release(
    "irse", 1e-5, "rgb", "half", "CurricularFace backbone/model_irse.py (BatchNorm defaults)"
  ),
  # insightface's MXNet release (model-r100-ii): the converter takes eps from its graph
  # (2e-5 in fresnet.py); RGB as MXNet decodes and CR-FIQA's extraction feeds it.
  "arcface-mxnet": Release(
    "iresnet", 2e-5, "rgb", "mxnet", "insightface symbol/fresnet.py, symbol_utils.py (MXNet)"
  ),
  # CR-FIQA(S)/(L): an insightface iResNet with its quality head `qs` (a `CRFIQAConfig`).
  # Its evaluation (evaluation/getQualityScore.py, --color_channel default "BGR";
  # FaceModel.get_batch_feature: cv2.imread, no conversion, no flip; QualityModel:
  # (x / 255 - 0.5) / 0.5) feeds BGR in [-1, 1]; eps 1e-5 as in backbones/iresnet.py.
  "cr-fiqa": Release(
    "iresnet",
    1e-5,
    "bgr",
    "half",
    "CR-FIQA backbones/iresnet.py, evaluation/getQualityScore.py, FaceModel.py, QualityModel.py",
  ),
}
# Families whose model is not a plain backbone: their config type (`FRConfig.for_family`).
QUALITY_FAMILIES = {"cr-fiqa": "CRFIQAConfig"}


def check_family(family: str) -> Release:
  if not isinstance(family, str) or family not in RELEASES:
    raise ValueError(f"unknown face-recognition family {family!r}; one of {', '.join(RELEASES)}")
  return RELEASES[family]


@dataclasses.dataclass(frozen=True)
class FRConfig:
  """A face-recognition backbone: 112x112 face -> [embedding_size] embedding.

  Stage s has `layers[s]` blocks of `widths[s]` channels; its first block has
  stride 2, so the final map is image_size / 2**len(layers) pixels a side
  (7 at 112) and the fc takes widths[-1] * grid**2 inputs.
  """

  kind: ClassVar[str] = "face_recognition"  # its entry in `models.registry.KINDS`
  family: str = "arcface"
  arch: str = "iresnet"
  layers: tuple[int, ...] = IRESNET_DEPTHS[100]
  widths: tuple[int, ...] = (64, 128, 256, 512)
  stem_width: int = 64
  embedding_size: int = 512
  image_size: int = 112
  bn_eps: float = 1e-5
  channel_order: str = "rgb"
  input_scale: str = "half"

  def __post_init__(self):
    """Checks every field, the sizes against `models.bounds` before anything is built."""
    stages = (1, B.MAX_STAGES)
    object.__setattr__(self, "layers", B.check_ints("layers", self.layers, 1, 1 << 20, stages))
    object.__setattr__(self, "widths", B.check_ints("widths", self.widths, 1, B.MAX_WIDTH, stages))
    if sum(self.layers) > B.MAX_BLOCKS:
      raise ValueError(
        f"layers {list(self.layers)}: {sum(self.layers)} blocks, over the {B.MAX_BLOCKS} "
        "this exfiqa builds"
      )
    for name, hi in (("stem_width", B.MAX_WIDTH), ("embedding_size", B.MAX_WIDTH)):
      object.__setattr__(self, name, B.check_int(name, getattr(self, name), 1, hi))
    object.__setattr__(
      self, "image_size", B.check_int("image_size", self.image_size, 1, B.MAX_IMAGE_SIZE)
    )
    eps = self.bn_eps
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < 1:
      raise ValueError(f"bn_eps {eps!r} is not a number in (0, 1) (BatchNorm's eps)")
    check_family(self.family)
    own_type = type(self).__name__ == QUALITY_FAMILIES.get(self.family)
    if (self.family in QUALITY_FAMILIES) != own_type:
      raise ValueError(
        f"family {self.family!r} needs a {QUALITY_FAMILIES.get(self.family, 'FRConfig')} "
        f"(FRConfig.for_family({self.family!r}) gives one), not a {type(self).__name__}"
      )
    if self.arch not in ARCHS:
      raise ValueError(f"arch {self.arch!r} is not one of {ARCHS}")
    if self.input_scale not in INPUT_SCALES:
      raise ValueError(f"input_scale {self.input_scale!r} is not one of {INPUT_SCALES}")
    from exfiqa_jax.data.preprocess import check_channel_order  # imports JAX: not for --help

    check_channel_order(self.channel_order)
    if len(self.layers) != len(self.widths) or not self.layers or min(self.layers) < 1:
      raise ValueError(f"layers {self.layers} and widths {self.widths}: one count >= 1 a stage")
    if self.image_size % 2 ** len(self.layers):
      raise ValueError(
        f"image_size {self.image_size} is not a multiple of 2**{len(self.layers)} (one stride-2 "
        "stage each)"
      )
    B.check_params(f"{self.arch}{list(self.layers)}", self.num_params)

  @classmethod
  def for_family(cls, family: str, **sizes) -> "FRConfig":
    """The family's architecture, eps, channel order and input scale, with `sizes`."""
    f = check_family(family)
    cls = globals()[QUALITY_FAMILIES[family]] if family in QUALITY_FAMILIES else cls
    return cls(
      family=family,
      arch=f.arch,
      bn_eps=f.bn_eps,
      channel_order=f.channel_order,
      input_scale=f.input_scale,
      **sizes,
    )

  @property
  def grid(self) -> int:
    """Side of the final feature map (7 for 112x112 inputs and four stages)."""
    return self.image_size // 2 ** len(self.layers)

  @property
  def fc_inputs(self) -> int:
    return self.widths[-1] * self.grid**2

  @property
  def num_params(self) -> int:
    """The weights of the convolutions and the fc (BatchNorm and PReLU left out): what
    `models.bounds.MAX_PARAMS` bounds."""
    n, c = 9 * 3 * self.stem_width, self.stem_width
    for blocks, w in zip(self.layers, self.widths, strict=True):
      n += 9 * c * w + 9 * w * w + c * w + (blocks - 1) * 18 * w * w
      c = w
    return n + self.fc_inputs * self.embedding_size

  @property
  def name(self) -> str:
    """ "iresnet100", "ir101"-style names for the released depths, else the layer counts."""
    depth = {v: k for k, v in IRESNET_DEPTHS.items()}.get(self.layers)
    if depth is None:
      return f"{self.arch}{list(self.layers)}"
    return f"iresnet{depth}" if self.arch == "iresnet" else f"ir{depth + (depth == 100)}"

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    return {**d, "layers": list(self.layers), "widths": list(self.widths)}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "FRConfig":
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise KeyError(f"unknown face-recognition config keys {sorted(unknown)}")
    return cls(**d)


@dataclasses.dataclass(frozen=True)
class CRFIQAConfig(FRConfig):
  """CR-FIQA (fdbtrs/CR-FIQA `backbones/iresnet.py`): the iResNet of `FRConfig` whose
  forward also gives the quality `qs = Linear(embedding_size -> 1)` of the embedding.
  CR-FIQA(S) is iresnet50, CR-FIQA(L) iresnet100."""

  kind: ClassVar[str] = "cr_fiqa"  # its entry in `models.registry.KINDS`
  family: str = "cr-fiqa"
  channel_order: str = "bgr"

  def __post_init__(self):
    super().__post_init__()
    if self.family != "cr-fiqa" or self.arch != "iresnet":
      raise ValueError(f"a CR-FIQA model is an iresnet of family 'cr-fiqa'; got {self.family!r}")

  @property
  def num_params(self) -> int:
    return super().num_params + self.embedding_size  # and the quality head
