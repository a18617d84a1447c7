"""Old home of the exercise checks, now ``omni_edu/lessons/<topic>/checks.py``.

Only the re-exports that solutions 03, 04 and 06 still import stay here, until those
lessons switch; then this folder goes.
"""
