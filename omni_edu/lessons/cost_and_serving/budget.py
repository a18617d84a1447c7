"""What lesson 08 sizes in each profile: the stand-in decoder whose decode step it times."""

# A decoder whose fp32 weights (12 * d^2 per layer) are far larger than the CPU caches or,
# on a GPU, large enough that launch overheads stop dominating: (d_model, n_layers).
BUDGET: dict[str, tuple[int, int]] = {"ci": (768, 4), "cpu": (1024, 8), "gpu": (4096, 8)}
