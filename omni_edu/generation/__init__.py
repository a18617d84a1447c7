"""Races of ways to generate: the machinery lessons 04 and 04b share.

* :mod:`~omni_edu.generation.race` - contestants (:class:`~omni_edu.generation.race.Arm`),
  the same scenes and prompts in every token form, training every arm at one budget and
  scoring every sampler setting, Pareto fronts.
"""
