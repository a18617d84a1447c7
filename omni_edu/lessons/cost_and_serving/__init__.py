"""Lesson 08, cost and serving: queues, a real two-stage run, cascade against native, and the
planner."""
