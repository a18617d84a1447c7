"""Every word OmniWorld can write: the default vocabulary of :class:`~.text.TextTokenizer`.

The words come from OmniWorld's captions, questions and answers
(:func:`omni_edu.data.language.vocabulary` derives them from its templates). They are written
out here because the tokenizer belongs to ``modalities/``, which the model may import and
which must not import the data package; ``tests/test_modalities.py`` checks that this list
and the data's derivation agree, so a new word in a template fails that test until it is
added here.
"""

# fmt: off
WORDS: tuple[str, ...] = (
    "a", "above", "and", "are", "at", "azure", "below", "big", "block", "blue", "bottom", "box",
    "circle", "colour", "corner", "crimson", "cross", "cyan", "disc", "does", "emerald", "four",
    "golden", "green", "has", "how", "huge", "i", "in", "is", "large", "left", "lemon", "lilac",
    "lime", "little", "lower", "many", "match", "navy", "no", "object", "objects", "of", "on",
    "one", "picture", "plus", "position", "purple", "pyramid", "red", "right", "ring",
    "scarlet", "scene", "see", "shape", "size", "small", "something", "sound", "square", "teal",
    "the", "there", "thing", "three", "tiny", "top", "triangle", "turquoise", "two", "upper",
    "violet", "wedge", "what", "where", "yellow", "yes", "zero"
)
# fmt: on
