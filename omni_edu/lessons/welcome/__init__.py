"""Lesson 00, welcome: the exercise that shows how checks work."""
