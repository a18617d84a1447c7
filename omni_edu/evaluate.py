# moved to omni_edu.stats; kept for lessons 04 and 06 until they switch
from omni_edu.stats import bootstrap_difference, bootstrap_mean  # noqa: F401
