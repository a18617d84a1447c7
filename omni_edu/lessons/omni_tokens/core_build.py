"""The learner's projector inside OmniLM (lesson 01's core-build exercise).

The exercise has the learner build the omni-token projector as a module of their own:
``Projector(config)`` with the parts ``text``, ``image``, ``audio`` and ``modality`` and a
forward pass ``(modality, text_ids, image, audio) -> (batch, seq, d_model)``
(:func:`~omni_edu.lessons.omni_tokens.checks.check_projector` checks it against the
package's weights). :func:`omnilm_with_projector` then puts that module where OmniLM's own
projector sits, so the learner trains a model whose every input goes through their code.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from omni_edu.model.interleave import PackedBatch
from omni_edu.model.omni_lm import OmniLM, OmniLMConfig
from omni_edu.model.projector import ProjectorConfig


class AsProjector(nn.Module):
    """A learner's projector, given the interface OmniLM calls: ``forward(packed)`` and
    ``embed(modality, text_ids, image, audio, codes=None)``. Continuous media only (the
    exercise's projector has no code tables)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    @property
    def text(self) -> nn.Embedding:
        """The learner's text table (OmniLM's text head shares it)."""
        return self.module.text

    def embed(
        self,
        modality: Tensor,
        text_ids: Tensor,
        image: Tensor,
        audio: Tensor,
        codes: Tensor | None = None,
    ) -> Tensor:
        """``(batch, seq, d_model)``, from the learner's forward pass."""
        if codes is not None and bool((codes >= 0).any()):
            raise ValueError(
                "this projector reads continuous pictures and sounds only; the batch holds "
                "discrete code ids (lesson 03's tokens)."
            )
        return self.module(modality, text_ids, image, audio)

    def forward(self, packed: PackedBatch) -> Tensor:
        """Embed a packed batch ``-> (batch, seq, d_model)``."""
        return self.embed(
            packed.modality, packed.text_ids, packed.image, packed.audio, packed.codes
        )


def omnilm_with_projector(
    factory: Callable[[ProjectorConfig], nn.Module], config: OmniLMConfig
) -> OmniLM:
    """An OmniLM whose projector is ``factory(config.projector)``.

    The module starts from the package projector's initial weights (loaded by name, as the
    check did), so that a learner's projector and the course's train from the same start;
    the text head stays tied to the module's text table when the config ties them.
    """
    model = OmniLM(config)
    module = factory(config.projector)
    module.load_state_dict(model.projector.state_dict())
    model.projector = AsProjector(module)
    if config.tie_embeddings:
        model.text_head.weight = model.projector.text.weight
    return model
