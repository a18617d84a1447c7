"""Output heads: discrete VQ tokens (VQ-VAE, FSQ) and continuous tokens (flow head).

Lesson 03 builds the image tokenizer (:mod:`~omni_edu.model.heads.vq`,
:mod:`~omni_edu.model.heads.fsq`); lesson 04 the per-token flow-matching head
(:mod:`~omni_edu.model.heads.flow`), the two-mode toy (:mod:`~omni_edu.model.heads.toy`)
and the text -> image race between the two (:mod:`~omni_edu.model.heads.text_to_image`,
imported on its own because it pulls in the decoder and the trainer).
"""

from omni_edu.model.heads.flow import (
    FlowHead,
    FlowHeadConfig,
    RegressionHead,
    euler_step,
    flow_matching_loss,
    train_head,
)
from omni_edu.model.heads.fsq import FSQ
from omni_edu.model.heads.toy import mode_coverage, two_mode_points
from omni_edu.model.heads.vq import (
    VQVAE,
    VectorQuantizer,
    VQVAEConfig,
    codebook_usage,
    ema_codebook_update,
    evaluate_autoencoder,
    kmeans,
    nearest_code,
    quantize_straight_through,
    train_autoencoder,
    vq_loss_terms,
)

__all__ = [
    "FSQ",
    "VQVAE",
    "FlowHead",
    "FlowHeadConfig",
    "RegressionHead",
    "VQVAEConfig",
    "VectorQuantizer",
    "codebook_usage",
    "ema_codebook_update",
    "euler_step",
    "evaluate_autoencoder",
    "flow_matching_loss",
    "kmeans",
    "mode_coverage",
    "nearest_code",
    "quantize_straight_through",
    "train_autoencoder",
    "train_head",
    "two_mode_points",
    "vq_loss_terms",
]
