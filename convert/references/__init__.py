"""The independent PyTorch references of every model family, in one place.

Each is written from its release's model file or from docs/protocol.md, not
from the Flax code: NCHW, PyTorch's own layers and defaults, the releases'
`state_dict` keys and shapes. `convert --verify` and the tests compare the
converted Flax models against them (`exfiqa_jax.convert.families` names each
family's reference and its test inputs).

- `vit_fiqa`: ViT-FIQA (docs/protocol.md §7, §9).
- `face_recognition`: the insightface iResNet (ArcFace, ElasticFace, MagFace) and
  CurricularFace's IR backbone.
- `cr_fiqa`: CR-FIQA, the iResNet with its quality head `qs` (fdbtrs/CR-FIQA
  `backbones/iresnet.py`).
- `serfiq`: SER-FIQ's stochastic head on those backbones, given explicit masks
  (docs/protocol.md §11).
- `grafiqs`: GraFIQs' BN_Model score and its torch.autograd gradients (§11).
"""
