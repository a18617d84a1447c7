"""Plots and widgets shared by the lessons."""
