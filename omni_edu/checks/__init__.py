"""Checks for the exercises, one module per lesson topic."""
