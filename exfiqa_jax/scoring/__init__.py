"""Scoring images: every exit score and the embedding, sharded, resumable, multi-host."""
