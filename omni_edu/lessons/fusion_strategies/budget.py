"""What lesson 05 trains in each profile: steps per task, batch size, training examples."""

# Per-profile sizes of the comparison. Steps are per task: the tight task sits on a
# plateau for hundreds of steps before a run leaves it (if it does), the loose one is
# learned in tens. Measured in ci (batch 32, lr 3e-3, one 2-core CPU shared with other
# jobs): within 500-600 steps no early-fusion run left chance (0 of 10, also with
# batch 16, lr 1e-2 or a constant learning rate); within 1000 steps seed 0 did (0.82,
# leaving at about step 650) and seeds 1 and 2 did not. Even 1000 steps showed the
# plateau more than the effect, and cost 611 s of the 2-core test suite (2026-11-30),
# ten times a ci lesson's share. So ci trains the tight task 300 steps: it shows the
# plateau (the lesson says so, and points to the cpu profile, where the effect shows) and
# the loose task, learned in 60 steps, at the lesson's minute.
BUDGET: dict[str, dict] = {
    "ci": {"steps": {"match": 300, "colour": 60}, "batch_size": 32, "n_train": 2048},
    # Measured at the cpu model size (one seed, before the <eoi> <boa> markers): with batch
    # 64 and 1200 steps no variant left chance; with batch 32, early fusion left it after
    # about 1300 steps and reached 0.93 at 2000.
    "cpu": {"steps": {"match": 2000, "colour": 200}, "batch_size": 32, "n_train": 8192},
    # Not measured on a GPU: a guess at a budget that leaves the plateau at gpu sizes.
    "gpu": {"steps": {"match": 3000, "colour": 300}},
}
