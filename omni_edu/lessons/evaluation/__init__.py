"""Lesson 09, evaluation: the multiple-choice harness, circular evaluation, answerers."""
