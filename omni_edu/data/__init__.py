"""OmniWorld: generated scenes seen as a picture, heard as a sound, told as a caption.

Start with :class:`OmniWorld`::

    world = OmniWorld("train", seed=0, n_objects=(1, 2))
    batch = world.sample(256)        # OmniBatch: images, waveforms, mels, captions, ...
    show_sample(batch[0])            # picture, sound and caption: omni_edu.viz.omniworld
    world.sample(256, prompts=PromptSpec.uniform(0.5, p_empty=0.1))  # prompts leaving
                                     # attributes free: batch.prompts (texts, images, fixed)

The pieces live in small modules: ``scene`` (attributes, splits), ``render`` (pictures),
``sound`` (waveforms), ``language`` (captions, parser, questions), ``prompts`` (prompts
that leave attributes free, and the data's distribution of what they leave), ``world``
(batches). ``documents`` lays scenes out as interleaved documents for OmniLM (lesson 02;
import it from :mod:`omni_edu.data.documents`).
"""

from omni_edu.data.language import (
    ABILITIES,
    SYNONYMS,
    Question,
    ask,
    caption,
    describe_object,
    normalise,
    parse_caption,
    refer,
    score_caption,
    vocabulary,
)
from omni_edu.data.prompts import (
    Prompts,
    PromptSpec,
    conditional_distribution,
    conditional_distributions,
    sample_conditional,
)
from omni_edu.data.render import render_images
from omni_edu.data.scene import (
    ABSENT,
    ATTRIBUTES,
    COLOUR,
    COLOURS,
    HELDOUT_PAIRS,
    MAX_OBJECTS,
    POSITION,
    POSITIONS,
    SHAPE,
    SHAPES,
    SIZE,
    SIZES,
    SPLITS,
    VALUES,
    Scene,
    SceneObject,
    allowed_pairs,
    n_values,
    row_col,
    sample_attributes,
    scenes_to_tensor,
    tensor_to_scenes,
    value_index,
    value_name,
)
from omni_edu.data.sound import synthesize_audio
from omni_edu.data.world import MatchBatch, OmniBatch, OmniSample, OmniWorld
from omni_edu.modalities.audio import MelConfig, log_mel, mel_to_waveform

__all__ = [
    "ABILITIES",
    "ABSENT",
    "ATTRIBUTES",
    "COLOUR",
    "COLOURS",
    "HELDOUT_PAIRS",
    "MAX_OBJECTS",
    "POSITION",
    "POSITIONS",
    "SHAPE",
    "SHAPES",
    "SIZE",
    "SIZES",
    "SPLITS",
    "SYNONYMS",
    "VALUES",
    "MatchBatch",
    "MelConfig",
    "OmniBatch",
    "OmniSample",
    "OmniWorld",
    "PromptSpec",
    "Prompts",
    "Question",
    "Scene",
    "SceneObject",
    "allowed_pairs",
    "ask",
    "caption",
    "conditional_distribution",
    "conditional_distributions",
    "describe_object",
    "log_mel",
    "mel_to_waveform",
    "n_values",
    "normalise",
    "parse_caption",
    "refer",
    "render_images",
    "row_col",
    "sample_attributes",
    "sample_conditional",
    "scenes_to_tensor",
    "score_caption",
    "synthesize_audio",
    "tensor_to_scenes",
    "value_index",
    "value_name",
    "vocabulary",
]
