"""Lesson 06, any-to-any: the checks of the document exercise."""
