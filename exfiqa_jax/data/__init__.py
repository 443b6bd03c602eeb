"""Face benchmark data: datasets built once from local files, read without TensorFlow.

Builders (`build(builder, name, manual_dir, data_dir)`): `verification_bin`
(lfw.bin, agedb_30.bin, ...), `cr_fiqa_folder` (XQLFW, Adience, ...),
`ijbc_1to1`, `face_images` (a folder or a list file). `load("builder/name",
data_dir)` gives a `Dataset` of images, ids and, where present, pairs and
templates.
"""

from exfiqa_jax.data.build import BUILDERS, build
from exfiqa_jax.data.dataset import Dataset, Pairs, Templates, from_files, load
from exfiqa_jax.data.sources import ArraySource, FileSource, ImageSource, RecordSource

__all__ = [
  "BUILDERS",
  "Dataset",
  "Pairs",
  "Templates",
  "build",
  "load",
  "from_files",
  "ImageSource",
  "ArraySource",
  "FileSource",
  "RecordSource",
]
