# moved to omni_edu.lessons.vq_tokens.checks; kept for lesson 03 until it switches
from omni_edu.lessons.vq_tokens.checks import check_ema_update, check_quantize  # noqa: F401
