"""Moved to `convert.torch_reference` (convert --verify runs it); kept importable here."""
from convert.torch_reference import ViTFIQAReference, randomize_  # noqa: F401
