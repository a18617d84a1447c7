"""Races of ways to generate: the machinery lessons 04 and 04b share.

* :mod:`~omni_edu.generation.race` - contestants (:class:`~omni_edu.generation.race.Arm`),
  the same scenes and prompts in every token form, training every arm at one budget and
  scoring every sampler setting, Pareto fronts;
* :mod:`~omni_edu.generation.costs` - what each way costs: training FLOPs, and per picture
  drawn, decoder passes, tokens through the decoder, head passes, FLOPs and milliseconds
  (lesson 08 sets them against the roofline).
"""
