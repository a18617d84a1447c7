"""Lesson 05, fusion strategies: tasks, the matched-budget experiment, costs and figures."""
