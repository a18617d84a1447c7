"""Any-to-any: one OmniLM, every direction, chosen by the prompt (lesson 06).

The same weights caption a picture, transcribe a sound, draw a caption, speak a caption,
and turn a picture into a sound or a sound into a picture. What to do is written in the
prompt: a *task token* that names the output, then the input, then the output::

    <bos> <caption> <boi> image <eoi> a small red circle at the top left <eos>   image->text
    <bos> <draw> a small red circle at the top left <boi> image <eoi> <eos>      text->image
    <bos> <speak> <boi> image <eoi> <boa> audio <eoa> <eos>                      image->audio

Only the output is trained (the task token and the input are ``predict=False``), so the
model learns to *answer* prompts, not to write them.

Lessons import it as ``from omni_edu.parts import any_to_any as a2a``; its pieces, one
box each:

* :mod:`~omni_edu.parts.any_to_any.directions`: :data:`DIRECTIONS` and
  :func:`make_document`, the prompt format of every direction;
* :mod:`~omni_edu.parts.any_to_any.pools`: :class:`AnyToAnyData`, a pool of OmniWorld
  scenes as model-ready pieces (pictures as patches or as lesson 03's code ids), laid out
  as documents of any task and packed once, so a training batch is a cheap row selection;
* :mod:`~omni_edu.parts.any_to_any.build`: :func:`build_model` and
  :func:`balanced_loss_weights`, an OmniLM with the chosen output heads, its modality
  losses put on one scale;
* :mod:`~omni_edu.parts.any_to_any.stages`: :func:`train_stage`, one stage of a
  curriculum (a data mix and a number of steps);
* :mod:`~omni_edu.parts.any_to_any.scoring`: :func:`score_directions`, per-direction
  attribute accuracy: captions are parsed, generated pictures and sounds are read back by
  the judges of :mod:`omni_edu.parts.judges`;
* :mod:`~omni_edu.parts.any_to_any.recipe`: :func:`capstone`, the course's any-to-any
  model, trained once by this recipe and kept in the course cache: lesson 06 builds it,
  lessons 08 and 09 measure it;
* :mod:`~omni_edu.parts.any_to_any.gallery`: lesson 06's gallery figure.

What lesson 06b measures with these pieces (curriculum, text dominance, the grounding test
of transfer) lives in :mod:`omni_edu.lessons.modality_transfer`.
"""

from omni_edu.parts.any_to_any.build import (
    FLOW_HEAD,
    balanced_loss_weights,
    build_model,
    model_config,
    prompt_losses,
)
from omni_edu.parts.any_to_any.directions import (
    DIRECTIONS,
    QUESTION,
    TASKS,
    UNIMODAL,
    get_direction,
    make_document,
    question_document,
    unconditional_document,
)
from omni_edu.parts.any_to_any.gallery import gallery_figure
from omni_edu.parts.any_to_any.pools import AnyToAnyData
from omni_edu.parts.any_to_any.recipe import (
    CAPSTONE_HEADS,
    TEST_PROMPTS,
    CapstoneRecipe,
    capstone,
    capstone_data,
    capstone_recipe,
    recipe_model,
    train_recipe,
)
from omni_edu.parts.any_to_any.scoring import (
    Generations,
    answer_accuracy,
    answer_blind,
    draw_samples,
    generate,
    sample_scores,
    score_directions,
    score_generations,
    text_log_likelihood,
)
from omni_edu.parts.any_to_any.stages import curriculum, task_losses, train_stage

__all__ = [
    "CAPSTONE_HEADS",
    "DIRECTIONS",
    "FLOW_HEAD",
    "QUESTION",
    "TASKS",
    "TEST_PROMPTS",
    "UNIMODAL",
    "AnyToAnyData",
    "CapstoneRecipe",
    "Generations",
    "answer_accuracy",
    "answer_blind",
    "balanced_loss_weights",
    "build_model",
    "capstone",
    "capstone_data",
    "capstone_recipe",
    "curriculum",
    "draw_samples",
    "gallery_figure",
    "generate",
    "get_direction",
    "make_document",
    "model_config",
    "prompt_losses",
    "question_document",
    "recipe_model",
    "sample_scores",
    "score_directions",
    "score_generations",
    "task_losses",
    "text_log_likelihood",
    "train_recipe",
    "train_stage",
    "unconditional_document",
]
