"""Output heads and tokenizers: how OmniLM writes pictures and sounds.

* discrete tokens (lesson 03): the VQ-VAE (:mod:`~omni_edu.model.heads.vq`), its quantisers
  (:mod:`~omni_edu.model.heads.quantizers`), FSQ (:mod:`~omni_edu.model.heads.fsq`); the
  model writes their code ids with a softmax (:class:`~omni_edu.model.heads.output.CodeHead`);
* continuous tokens (lesson 04): regression heads and the per-token flow-matching head
  (:mod:`~omni_edu.model.heads.flow`, :mod:`~omni_edu.model.heads.output`); lesson 04's
  two-mode toy that shows why they differ is :mod:`omni_edu.lessons.diffusion_head.toy`;
* whole spans at once (lesson 04b, :mod:`~omni_edu.model.heads.span`): the DiT head
  (:mod:`~omni_edu.model.heads.dit`), whole-image diffusion in the decoder
  (:mod:`~omni_edu.model.heads.transfusion`), masked codes (:mod:`~omni_edu.model.heads.masked`).

Training code lives outside ``omni_edu.model`` (see :mod:`omni_edu.train`).
"""

from omni_edu.model.heads.dit import DiTConfig, DiTHead
from omni_edu.model.heads.flow import (
    FlowHead,
    FlowHeadConfig,
    RegressionHead,
    euler_step,
    flow_matching_loss,
)
from omni_edu.model.heads.fsq import FSQ
from omni_edu.model.heads.masked import MaskedCodeHead, masked_after, unmask_by_confidence
from omni_edu.model.heads.output import (
    HEAD_KINDS,
    CodeHead,
    LinearHead,
    build_head,
    sample_token,
)
from omni_edu.model.heads.quantizers import (
    VectorQuantizer,
    codebook_usage,
    ema_codebook_update,
    kmeans,
    nearest_code,
    quantize_straight_through,
    vq_loss_terms,
)
from omni_edu.model.heads.span import span_flow_loss
from omni_edu.model.heads.transfusion import TransfusionHead
from omni_edu.model.heads.vq import VQVAE, VQVAEConfig, evaluate_autoencoder

__all__ = [
    "FSQ",
    "HEAD_KINDS",
    "VQVAE",
    "CodeHead",
    "DiTConfig",
    "DiTHead",
    "FlowHead",
    "FlowHeadConfig",
    "LinearHead",
    "MaskedCodeHead",
    "RegressionHead",
    "TransfusionHead",
    "VQVAEConfig",
    "VectorQuantizer",
    "build_head",
    "codebook_usage",
    "ema_codebook_update",
    "euler_step",
    "evaluate_autoencoder",
    "flow_matching_loss",
    "kmeans",
    "masked_after",
    "nearest_code",
    "quantize_straight_through",
    "sample_token",
    "span_flow_loss",
    "unmask_by_confidence",
    "vq_loss_terms",
]
