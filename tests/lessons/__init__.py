"""Tests of lesson code: ``omni_edu/lessons/<topic>/`` -> ``test_<topic>.py``."""
