"""Maintainer tools: make_exercises, notebook hygiene, Colab set-up cell, doctor."""
