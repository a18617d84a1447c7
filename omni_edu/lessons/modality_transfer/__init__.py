"""Lesson 06b, modality transfer: the curriculum, text dominance, and the grounding test of
cross-modal transfer and "emergent synesthesia"."""
