"""Lesson 04b (the diffusion family): a DiT head, whole-image diffusion in the decoder and
masked discrete diffusion, raced against the per-token heads at one budget."""
