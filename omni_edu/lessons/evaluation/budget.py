"""What lesson 09 trains in each profile: the answerer's training questions and steps, and
the strengths at which it plants each cue."""

# Per profile: training questions per ability and optimizer steps for the answerer of
# lesson 09 (a small MLP: many cheap steps).
BUDGET: dict[str, tuple[int, int]] = {"ci": (1024, 450), "cpu": (4096, 1800), "gpu": (8192, 3000)}

# Per profile: the cue strengths of section 5 (the share of training items whose cue points
# to the right answer). Each strength is one answerer per cue type, so ci trains three.
STRENGTHS: dict[str, tuple[float, ...]] = {
    "ci": (0.25, 0.5, 0.8),
    "cpu": (0.25, 0.4, 0.6, 0.8),
    "gpu": (0.25, 0.4, 0.6, 0.8),
}
