"""Controlled experiments behind the lessons' claim checks.

Each module sets up one experiment (data, model, training budget, seeds) so that a
lesson can run it in one call and a test can check that it measures what it says.
"""
