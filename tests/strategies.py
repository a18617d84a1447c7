"""Hypothesis strategies that several test files draw from: OmniWorld scenes and the token
layouts of the fusion variants.

Import them by name, ``from strategies import scenes`` (conftest.py puts ``tests/`` on the path).
"""

from hypothesis import strategies as st

from omni_edu.data import COLOURS, POSITIONS, SHAPES, SIZES, Scene, SceneObject

# One object with any shape, colour, size and position.
scene_objects = st.builds(
    SceneObject,
    st.sampled_from(SHAPES),
    st.sampled_from(COLOURS),
    st.sampled_from(SIZES),
    st.sampled_from(POSITIONS),
)
# One to four objects, never two at one position (as OmniWorld draws them).
scenes = st.lists(scene_objects, min_size=1, max_size=4, unique_by=lambda o: o.position).map(
    lambda objs: Scene(tuple(objs))
)

# Token modalities of a fused sequence: text tokens anywhere; the image and the sound each
# one contiguous span (an encoder reads a whole image at once, so a text token sees all of it
# or none of it); text answers last.
_SPANS = {"text": ["text"], "image": ["image"] * 4, "audio": ["audio"] * 3}
fusion_layouts = st.permutations(["text", "text", "image", "audio"]).map(
    lambda order: [kind for span in [*order, "text"] for kind in _SPANS[span]]
)
