# moved to omni_edu.lessons.any_to_any.checks; kept for lesson 06 until it switches
from omni_edu.lessons.any_to_any.checks import check_make_document  # noqa: F401
