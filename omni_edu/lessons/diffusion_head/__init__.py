"""Lesson 04 (output heads): the race of heads on prompts that fix everything and prompts
that leave a choice."""
