# moved to omni_edu.lessons.diffusion_head.checks; kept for lesson 04 until it switches
from omni_edu.lessons.diffusion_head.checks import (  # noqa: F401
    check_euler_step,
    check_flow_matching_loss,
)
