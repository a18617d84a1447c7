"""Parts one lesson trains and a later one loads: the course cache and its recipes.

* :mod:`~omni_edu.parts.course_cache`: ``load_or_train(name, build, train, config)``;
* :mod:`~omni_edu.parts.tokenizers`: lesson 03's image and sound tokenizers;
* :mod:`~omni_edu.parts.judges`: the judges that read generated pictures and sounds back;
* :mod:`~omni_edu.parts.any_to_any`: every direction's prompts and pools, and the
  capstone of lesson 06 (``from omni_edu.parts import any_to_any as a2a``).
"""
