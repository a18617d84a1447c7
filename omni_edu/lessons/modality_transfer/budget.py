"""What lesson 06b trains in each profile (one ``BUDGET`` per lesson folder).

* ``curriculum_base``: the base steps of the curriculum comparison (the stages of
  :func:`omni_edu.parts.any_to_any.curriculum`), two models;
* ``dominance``: the text-dominance variants (three loss weightings or mixes): base steps
  of the capstone's stages, seeds, test scenes;
* ``grounding``: the factorial - scenes in each pool, test questions per set, stage-A steps
  (shared by every arm), stage-B steps per arm and seed, steps of the blind baseline,
  seeds, batch size (None: the profile's).

Measured in ci on a shared 2-core CPU (load about 7; 3 seeds, stage A 1200 steps, stage B
300, one colour word in three grounded): stage A learned one-object questions in taught words
to 1.00 and two-object ones to 0.40-0.62; on grounded one-object colour questions the arms
scored 0.28 (both paired) to 0.20 (neither), on grounded where-questions 0.50-0.55, with
95 % intervals of +-0.4 to 0.6 log-odds over seeds (the run took 677 s under that load).
Stage B's captions now use the grounded words half the time. Every step count goes through
``profile.budget``.
"""

BUDGET: dict[str, dict] = {
    "ci": {
        "curriculum_base": 150,
        "dominance": {"base": 200, "seeds": 1, "scenes": 128},
        "grounding": {
            "scenes": 1024,
            "test": 150,
            "stage_a": 1200,
            "stage_b": 300,
            "blind": 300,
            "seeds": 3,
            "batch_size": 32,
        },
    },
    # cpu: with curriculum base 200, dominance base 300 and four grounding seeds the lesson
    # ran past ten minutes on 2 cores (curriculum 307 s, dominance 217 s, then the factorial).
    "cpu": {
        "curriculum_base": 100,
        "dominance": {"base": 200, "seeds": 2, "scenes": 256},
        "grounding": {
            "scenes": 2048,
            "test": 300,
            "stage_a": 1200,
            "stage_b": 200,
            "blind": 200,
            "seeds": 3,
            "batch_size": 32,
        },
    },
    "gpu": {
        "curriculum_base": 1000,
        "dominance": {"base": 1000, "seeds": 3, "scenes": 1024},
        "grounding": {
            "scenes": 8192,
            "test": 1000,
            "stage_a": 4000,
            "stage_b": 1500,
            "blind": 1000,
            "seeds": 5,
            "batch_size": None,  # the profile's
        },
    },
}
