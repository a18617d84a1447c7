"""What lesson 02 trains in each profile (one ``BUDGET`` per lesson folder).

* ``decoder_steps``: the interleaved decoder of sections 3-5, trained once per seed;
* ``rope_steps`` and ``rope_seeds``: each of the three position schemes on the stripes
  pictures, per seed.

The cpu profile's decoder is wider and deeper than ci's (d_model 128 and 4 layers against
64 and 2): with 1500 decoder steps and three rope seeds of 600 steps the lesson ran past its
ten minutes on 2 cores (it was stopped at 426 s inside the rope comparison), so cpu trains the
decoder for 1200 steps and each rope model for 300 over two seeds. Every count goes through
``profile.budget`` (the gpu-dry run cuts it).
"""

BUDGET: dict[str, dict[str, int]] = {
    "ci": {"decoder_steps": 1500, "rope_steps": 150, "rope_seeds": 2},
    "cpu": {"decoder_steps": 1200, "rope_steps": 300, "rope_seeds": 2},
    "gpu": {"decoder_steps": 3000, "rope_steps": 3000, "rope_seeds": 5},
}
