"""What lesson 09 trains in each profile: the answerer's training questions and steps."""

# Per profile: training questions per ability and optimizer steps for the answerer of
# lesson 09 (a small MLP: many cheap steps).
BUDGET: dict[str, tuple[int, int]] = {"ci": (1024, 450), "cpu": (4096, 1800), "gpu": (8192, 3000)}
