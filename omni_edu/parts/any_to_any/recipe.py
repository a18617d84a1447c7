"""The capstone: the course's any-to-any model, its recipe and budget per profile.

Trained once by :class:`CapstoneRecipe` and kept in the course cache (:func:`capstone`):
lesson 06 builds it, lessons 08 and 09 measure it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from omni_edu.data import OmniWorld, PromptSpec
from omni_edu.model.heads.output import DISCRETE_KINDS
from omni_edu.model.omni_lm import OmniLM
from omni_edu.parts.any_to_any.build import (
    FLOW_HEAD,
    balanced_loss_weights,
    build_model,
    model_config,
)
from omni_edu.parts.any_to_any.directions import DIRECTIONS, QUESTION
from omni_edu.parts.any_to_any.pools import AnyToAnyData
from omni_edu.parts.any_to_any.stages import Stage, curriculum, train_stage
from omni_edu.profiles import Profile, get_profile

# What the capstone's inputs leave free in training: each attribute of a caption with
# probability 0.3 (a quarter of the captions still name all four), one caption in ten
# empty (classifier-free guidance's unconditional branch), three pictures in ten grey
# (colour free) and three sounds in ten untimed (position free).
CAPSTONE_PROMPTS = PromptSpec.uniform(0.3, p_empty=0.1, p_grey=0.3, p_untimed=0.3)
# Held-out prompts of lesson 06: "full" fixes everything (the control), "open" leaves each
# attribute of a caption free with probability 0.5, and every picture grey and every
# sound untimed.
TEST_PROMPTS = {"full": PromptSpec(), "open": PromptSpec.uniform(0.5, p_grey=1.0, p_untimed=1.0)}


@dataclass(frozen=True)
class CapstoneRecipe:
    """How the course's any-to-any model is made: data, heads, budget, curriculum.

    ``image_head`` / ``audio_head``: the output heads, chosen per profile by measurement
    (:data:`CAPSTONE_HEADS`; lesson 06 measures the candidates again in every run).
    ``base_steps`` sizes the stages: unified training on all six directions for
    ``2 * base_steps`` updates, then instruction-style questions with a replay of the
    directions for ``2/3 * base_steps`` (:func:`curriculum`). ``prompts``: what the
    training inputs leave free.
    """

    scenes: int
    test_scenes: int
    base_steps: int
    batch_size: int
    image_head: str = "linear"
    audio_head: str = "linear"
    question_modality: str = "image"
    seed: int = 0
    prompts: PromptSpec = CAPSTONE_PROMPTS

    @property
    def stages(self) -> list[Stage]:
        """The stages the capstone trains: unified, then instruct."""
        by_name = {s.name: s for s in curriculum(self.base_steps)}
        return [by_name["unified"], by_name["instruct"]]

    @property
    def model_settings(self) -> dict:
        """OmniLM config fields the heads need (:data:`FLOW_HEAD` for flow heads, and for
        lesson 04b's flow-trained span heads)."""
        flow_trained = {"flow", "dit", "transfusion"}
        return dict(FLOW_HEAD) if flow_trained & {self.image_head, self.audio_head} else {}


# The capstone's output heads (pictures, sounds) per profile, chosen by lesson 06's rule
# (fidelity on full prompts, validity and coverage on open ones) from its candidates trained
# with this recipe; lesson 06 measures them again in every run and says whether the rule
# still picks these. Measured in the ci profile on a 2-core CPU (2026-12-06); the cpu and
# gpu profiles follow ci's choice until a run there says otherwise (lesson 06 reports it).
CAPSTONE_HEADS = {"ci": ("flow", "flow"), "cpu": ("flow", "flow"), "gpu": ("flow", "flow")}
# Base steps of the capstone per profile (unified training gets twice as many). Measured
# with flow heads on a loaded 2-core CPU (2026-12-06): in ci, 300 base steps left the
# generating directions at 0.49 attribute accuracy and 600 reached 0.72-0.80 over two seeds
# (benchmarks/flow_ablation.py, "half the updates" against "recipe"); in cpu, 300 gave
# 0.48-0.69 on full prompts and 400 gave 0.68-0.74, in 16 minutes of training under load.
CAPSTONE_BASE_STEPS = {"ci": 600, "cpu": 400}


def capstone_recipe(profile: Profile | str | None = None) -> CapstoneRecipe:
    """The recipe for a profile: its heads (:data:`CAPSTONE_HEADS`) and its budget
    (:data:`CAPSTONE_BASE_STEPS` documents of 32, or the gpu profile's own sizes)."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    large = profile.name == "gpu"
    image_head, audio_head = CAPSTONE_HEADS[profile.name]
    base = profile.train_steps if large else CAPSTONE_BASE_STEPS[profile.name]
    return CapstoneRecipe(
        scenes=profile.budget(min(profile.n_train // 2, 4096), dry=64),
        test_scenes=profile.budget(profile.n_eval // 2, dry=16),
        base_steps=profile.budget(base, dry=3),
        batch_size=profile.batch_size if large else 32,
        image_head=image_head,
        audio_head=audio_head,
    )


def capstone_data(
    recipe: CapstoneRecipe,
    profile: Profile | str | None = None,
    test_prompts: PromptSpec | None = None,
    heads: tuple[str, str] | None = None,
) -> tuple[AnyToAnyData, AnyToAnyData]:
    """The training pool and the test scenes of the capstone: single-object OmniWorld
    scenes with canonical captions ("a small red circle at the top left"), so a tiny
    model can learn all six directions in minutes on a CPU. Training prompts follow
    ``recipe.prompts``; test prompts ``test_prompts`` (default: fully specified).
    ``heads``: build the pools for other heads than the recipe's (a candidate's)."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    tokenizers = _tokenizers_for(heads or (recipe.image_head, recipe.audio_head), profile)

    def world(split: str) -> OmniWorld:
        return OmniWorld(split, seed=0, n_objects=1, caption_style="canonical", profile=profile)

    q = recipe.question_modality
    train = AnyToAnyData(
        world("train"), recipe.scenes, question_modality=q, prompts=recipe.prompts, **tokenizers
    )
    tasks = (*DIRECTIONS, QUESTION)
    test = AnyToAnyData(
        world("test"),
        recipe.test_scenes,
        tasks,
        question_modality=q,
        prompts=test_prompts,
        **tokenizers,
    )
    return train, test


def _tokenizers_for(heads: tuple[str, str], profile: Profile) -> dict[str, nn.Module]:
    """Lesson 03's tokenizers for the modalities written as codes."""
    out = {}
    if heads[0] in DISCRETE_KINDS:
        from omni_edu.parts.tokenizers import image_tokenizer

        out["image_tokenizer"] = image_tokenizer(profile).model
    if heads[1] in DISCRETE_KINDS:
        from omni_edu.parts.tokenizers import audio_tokenizer

        out["audio_tokenizer"] = audio_tokenizer(profile).model
    return out


def recipe_model(data: AnyToAnyData, recipe: CapstoneRecipe) -> OmniLM:
    """A fresh OmniLM with the recipe's heads, sized by the profile, its loss weights
    measured on ``data`` (:func:`balanced_loss_weights`)."""
    heads = (recipe.image_head, recipe.audio_head)
    weights = balanced_loss_weights(data, *heads, **recipe.model_settings)
    return build_model(data, recipe.seed, weights, None, *heads, **recipe.model_settings)


def train_recipe(
    model: OmniLM, data: AnyToAnyData, recipe: CapstoneRecipe, progress: bool = True
) -> dict[str, list[float]]:
    """Train ``model`` in place through the recipe's stages; returns each stage's losses."""
    losses = {}
    for stage in recipe.stages:
        history = train_stage(
            model,
            data,
            stage.mix,
            stage.steps,
            recipe.seed,
            batch_size=recipe.batch_size,
            progress=progress,
        )
        losses[stage.name] = history.losses["loss"]
    return losses


def capstone(profile: Profile | str | None = None, retrain: bool = False, verbose: bool = True):
    """The any-to-any model of lesson 06, from the course cache or trained by its recipe.

    Returns a :class:`~omni_edu.parts.course_cache.CachedPart`: ``model`` is the trained
    :class:`~omni_edu.model.omni_lm.OmniLM` (on the CPU when loaded), ``extra`` holds the
    recipe's training losses per stage and the loss weights it trained with. Training
    shows a progress bar per stage; on a 2-core CPU in the ``ci`` profile it takes about
    two minutes. The loss weights are measured when the model trains, not when it loads:
    they decide how it learns, not its shape.
    """
    from dataclasses import asdict

    from omni_edu.parts.course_cache import load_or_train

    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    recipe = capstone_recipe(profile)
    data, _ = capstone_data(recipe, profile)
    heads = (recipe.image_head, recipe.audio_head)
    config = model_config(data, None, profile, *heads, recipe.seed, **recipe.model_settings)

    def build() -> OmniLM:
        torch.manual_seed(recipe.seed)
        return OmniLM(config)

    def train(model: OmniLM) -> dict:
        weights = balanced_loss_weights(data, *heads, **recipe.model_settings)
        model.config.loss_weights = weights
        return {"losses": train_recipe(model, data, recipe), "loss_weights": weights}

    settings = {"recipe": asdict(recipe), "model": asdict(config), "version": 2}
    part = load_or_train("capstone", build, train, settings, profile, retrain, verbose)
    part.model.config.loss_weights = dict(part.extra["loss_weights"])
    return part
