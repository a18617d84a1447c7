"""Lesson 07, scaling laws: the laws and their fits, the sweeps that feed them, figures."""
