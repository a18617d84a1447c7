"""Lesson 02, interleaved autoregression: 1-D against multimodal RoPE, cross-modal use."""
