"""Omni from Scratch: the helper package every lesson imports.

Import what a lesson needs from its submodule (``omni_edu.data``,
``omni_edu.model.transformer``, ...). This top level stays light so that
``import omni_edu`` is instant and works without a GPU or a network.
"""

from omni_edu.profiles import get_profile, seed_everything

__version__ = "0.1.0"


def doctor() -> None:
    """Print the set-up report: Python, torch, GPU, widgets, active profile, warnings."""
    from omni_edu.tools.doctor import print_report

    print_report()


__all__ = ["__version__", "doctor", "get_profile", "seed_everything"]
