"""Lesson 01, omni tokens: information per token, modality confusion, interleaving by position."""
