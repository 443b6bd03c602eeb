"""ViT-FIQA in Flax NNX: the model, its config and cost, inference, checkpoints, attention maps."""
