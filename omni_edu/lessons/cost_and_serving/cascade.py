"""A cascade (speech recognition -> text model -> speech synthesis, three models, each waiting
for the previous one's whole output) against one **native** any-to-any model that hears the
question and speaks the answer itself.

:class:`GenerationStage` prices one model's generation with the roofline;
:func:`voice_assistant_estimate` extrapolates both systems to real model sizes, and
:func:`handoff_loss` measures what the hand-off through text throws away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from omni_edu import cost
from omni_edu.modalities.audio import LOG_EPS

if TYPE_CHECKING:  # type hints only: the workers import what they need when they build
    pass


# ---------------------------------------------------------------------------------------------
# Pipeline versus native
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenerationStage:
    """One model call of a serving pipeline, for the roofline estimate.

    It reads ``prompt_tokens`` new tokens at once (the prefill: compute-bound), then writes
    ``output_tokens`` one at a time (decode steps: memory-bound). ``cached_tokens`` are
    already in the model's KV cache from an earlier call (they cost no prefill, but every
    new token attends to them).
    """

    name: str
    model: cost.ModelShape
    prompt_tokens: int
    output_tokens: int
    cached_tokens: int = 0

    def seconds(self, device: cost.Hardware, dtype: str = "bf16") -> float:
        """Roofline seconds of the whole call on ``device`` with ``dtype`` weights and cache."""
        total = 0.0
        if self.prompt_tokens:
            prefill = cost.prefill_cost(
                self.model, self.prompt_tokens, 1, dtype, cached_tokens=self.cached_tokens
            )
            total += prefill.time(device)
        start = self.cached_tokens + self.prompt_tokens
        for k in range(self.output_tokens):
            total += cost.decode_step_cost(self.model, start + k, 1, dtype).time(device)
        return total


# Real sizes for the extrapolation. Whisper large-v3: encoder and decoder of 32 layers, width
# 1280, 20 heads, 1.55B parameters in all (Radford et al. 2022, Table 1), about 0.64B each
# plus the embeddings. The speech synthesiser: CosyVoice 2 uses a Qwen2.5-0.5B language model
# to write 25 Hz speech tokens (arXiv 2412.10117); we give it the Qwen2-0.5B shape.
WHISPER_ENCODER = cost.ModelShape("whisper-large encoder", 0.64e9, 32, 1280, 20, 20, 64)
WHISPER_DECODER = cost.ModelShape("whisper-large decoder", 0.91e9, 32, 1280, 20, 20, 64)
# Speech tokens per second of answer, for both systems: CosyVoice 2's documented 25 Hz.
# Qwen2.5-Omni's report does not state its Talker's codec rate in what we read; a 50 Hz
# codec would double the speech steps of the native column.
SPEECH_TOKENS_PER_SECOND = 25


def voice_assistant_estimate(
    device: cost.Hardware,
    dtype: str = "bf16",
    question_seconds: float = 5.0,
    transcript_tokens: int = 20,
    system_tokens: int = 100,
    answer_tokens: int = 60,
    first_text_tokens: int = 10,
    first_audio_seconds: float = 1.0,
) -> dict[str, dict[str, float]]:
    """Roofline time to the first second of spoken answer: cascade versus native.

    *Cascade*: Whisper-large transcribes the question (its encoder always reads a padded
    30 s window, 1500 tokens), a 7B text model (Qwen2-7B shape) writes the **whole** answer
    of ``answer_tokens`` before a 0.5B speech model can start, which then writes
    ``first_audio_seconds`` of speech tokens.

    *Native* (Qwen2.5-Omni's Thinker-Talker design): the 7B Thinker reads the question as
    25 Hz audio tokens and writes ``first_text_tokens`` of its answer; the Talker
    (:data:`~omni_edu.cost.MODEL_SHAPES` ``"qwen2.5-omni-talker"``, about 1.35B) reads the
    Thinker's hidden states of that context and writes the speech tokens. The speech tokens
    never pass through the 7B model.

    Returns seconds per stage for each, plus ``"total"``. These are lower bounds at batch 1:
    no network, no voice-activity detection waiting for the end of the question, no queueing,
    and neither system's vocoder (speech tokens -> waveform) is counted.
    """
    llm = cost.get_model_shape("qwen2-7b")
    tts = cost.get_model_shape("qwen2-0.5b")
    talker = cost.get_model_shape("qwen2.5-omni-talker")
    audio_in = cost.qwen_omni_audio_tokens(question_seconds)
    speech = math.ceil(SPEECH_TOKENS_PER_SECOND * first_audio_seconds)
    heard = system_tokens + audio_in
    cascade = [
        GenerationStage(
            "ASR encoder", WHISPER_ENCODER, cost.whisper_audio_tokens(question_seconds), 0
        ),
        GenerationStage("ASR decoder", WHISPER_DECODER, 4, transcript_tokens),
        GenerationStage("text model", llm, system_tokens + transcript_tokens, answer_tokens),
        GenerationStage("speech model", tts, answer_tokens, speech),
    ]
    native = [
        GenerationStage("Thinker reads question", llm, heard, 0),
        GenerationStage("Thinker first words", llm, 0, first_text_tokens, cached_tokens=heard),
        GenerationStage("Talker speaks", talker, heard + first_text_tokens, speech),
    ]
    out = {}
    for name, stages in (("cascade", cascade), ("native", native)):
        times = {s.name: s.seconds(device, dtype) for s in stages}
        times["total"] = sum(times.values())
        out[name] = times
    return out


def mel_log_power(mels: torch.Tensor) -> torch.Tensor:
    """The natural log of each mel band's power, up to one constant, from log-mel features.

    :func:`~omni_edu.modalities.audio.log_mel` maps log power linearly so that silence (power
    ``LOG_EPS``) becomes -1 and power 1 becomes +1; undoing that slope gives
    ``log(power) = mels * (-log(LOG_EPS) / 2) + constant``. Shape-preserving.
    """
    return mels * (-math.log(LOG_EPS) / 2)


def handoff_loss(batch, train_fraction: float = 0.5) -> dict[str, float]:
    """How much of an audio-only attribute survives the hand-off through a transcript.

    The attribute: each clip's exact loudness (log RMS of the waveform). The caption says
    "big" or "small", so a perfect transcript still tells the size class; the loudness
    *within* a class (OmniWorld jitters it by up to 10%) lives only in the audio, like tone of
    voice in real speech. We fit two linear predictors of the within-class loudness on half
    the batch and report R^2 on the other half:

    * ``r2_from_transcript``: from the transcript, i.e. the size class (0 by construction:
      the class mean is all a transcript allows);
    * ``r2_from_audio``: from the log-mel features the native model reads (their total
      energy).

    ``batch``: an :class:`~omni_edu.data.OmniBatch` of one-object scenes.
    """
    if batch.mask.sum(1).max() > 1:
        raise ValueError("handoff_loss expects one-object scenes (OmniWorld(n_objects=1))")
    n = len(batch)
    n_train = int(n * train_fraction)
    if n_train < 8 or n - n_train < 8:
        raise ValueError(f"need at least 16 samples to fit and test; got {n}")
    loudness = batch.waveforms.pow(2).mean(1).sqrt().log().double()
    size = batch.attributes[:, 0, 2]
    # What the transcript allows: one value per size class (fitted on the training half).
    class_mean = torch.zeros(int(size.max()) + 1, dtype=torch.float64)
    for k in size.unique():
        class_mean[k] = loudness[:n_train][size[:n_train] == k].mean()
    residual = loudness - class_mean[size]  # the part no transcript carries
    # The clip's total mel energy: undo the log-mel scaling and sum the power over frames
    # and channels (one value per size class as well, as the transcript gets).
    energy = torch.logsumexp(mel_log_power(batch.mels.double()), dim=(1, 2))
    features = torch.cat([energy[:, None], nn.functional.one_hot(size).double()], dim=1)
    weights = torch.linalg.lstsq(features[:n_train], residual[:n_train, None]).solution
    test = residual[n_train:]

    def r2(prediction: torch.Tensor) -> float:
        return float(1 - ((test - prediction) ** 2).sum() / ((test - test.mean()) ** 2).sum())

    return {
        "r2_from_transcript": r2(torch.zeros_like(test)),
        "r2_from_audio": r2((features[n_train:] @ weights).squeeze(1)),
        "within_class_spread": float(test.std()),
    }
