"""Lesson 03, VQ tokens: the checks of the quantiser exercises."""
