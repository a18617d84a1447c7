"""Audio as tokens: log-mel frames, their inverse, and frames grouped into tokens.

A waveform has thousands of samples per second, far too many tokens for a transformer.
The usual front end (Whisper, most omni models) slides a window along the sound, keeps
the energy per frequency band on a mel scale (spaced like human pitch perception) and
takes the log (loudness is perceived logarithmically). Everything here is plain torch:
``torch.stft`` plus a mel filterbank built in code, so nothing needs torchaudio.

Going back (mel -> sound) is lossy twice over: the mel bands merge neighbouring
frequencies (we undo that by least squares) and the phase is gone (we guess it with
Griffin-Lim). Good enough to *hear* what a model generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from omni_edu.profiles import Profile, get_profile

# Power below LOG_EPS counts as silence. The log is then scaled so that silence maps to
# -1 and a full-scale sine (power 1 in its band) to +1: features of order one suit models.
LOG_EPS = 1e-5
_LOG_SHIFT = math.log(LOG_EPS) / 2
_LOG_SCALE = -math.log(LOG_EPS) / 2

# One frame every 1/64 s: a 0.5 s clip becomes 32 frames at any sample rate.
FRAMES_PER_SECOND = 64


@dataclass(frozen=True)
class MelConfig:
    """How a waveform becomes log-mel frames.

    ``hop_length`` samples between frames; each frame looks at ``n_fft`` samples
    (a Hann window). ``frame_ms`` is the time one frame advances.
    """

    sample_rate: int = 8000
    n_mels: int = 32
    hop_length: int = 125
    n_fft: int = 256
    f_min: float = 0.0

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_mels", "hop_length", "n_fft"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"MelConfig.{name} should be a positive int; got {value!r}")
        if self.n_fft < self.hop_length:
            raise ValueError(
                f"MelConfig.n_fft ({self.n_fft}) should be at least hop_length "
                f"({self.hop_length}), or frames would skip samples"
            )

    @classmethod
    def from_profile(cls, profile: Profile | None = None) -> MelConfig:
        """The config for ``profile`` (default: the active one): 64 frames per second,
        a window of at least two hops rounded up to a power of two."""
        profile = profile or get_profile()
        hop = profile.sample_rate // FRAMES_PER_SECOND
        n_fft = 1 << (2 * hop - 1).bit_length()
        return cls(profile.sample_rate, profile.n_mels, hop, n_fft)

    @property
    def n_freqs(self) -> int:
        """Frequency bins of one STFT frame."""
        return self.n_fft // 2 + 1

    @property
    def frame_ms(self) -> float:
        """Milliseconds one log-mel frame advances."""
        return 1000.0 * self.hop_length / self.sample_rate

    def n_frames(self, n_samples: int) -> int:
        """Frames for a waveform of ``n_samples`` samples (one per full hop)."""
        return n_samples // self.hop_length


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """The HTK mel scale: roughly linear below 1 kHz, logarithmic above."""
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


@lru_cache(maxsize=16)
def mel_filterbank(config: MelConfig) -> torch.Tensor:
    """Triangular filters, equally spaced in mel, as a ``(n_freqs, n_mels)`` matrix.

    ``power_spectrum @ mel_filterbank(config)`` sums the power of the FFT bins inside
    each band; each triangle peaks at 1 on its centre frequency.
    """
    f_max = config.sample_rate / 2
    mels = torch.linspace(
        hz_to_mel(torch.tensor(config.f_min)).item(),
        hz_to_mel(torch.tensor(f_max)).item(),
        config.n_mels + 2,
        dtype=torch.float64,
    )
    edges = mel_to_hz(mels)  # (n_mels + 2,) lower edge, centres, upper edge
    freqs = torch.linspace(0, f_max, config.n_freqs, dtype=torch.float64)[:, None]
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return torch.minimum(rising, falling).clamp(min=0).float()


@lru_cache(maxsize=16)
def _window(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft)


def _stft(waveforms: torch.Tensor, config: MelConfig) -> torch.Tensor:
    """Complex STFT ``(batch, n_freqs, frames + 1)``, scaled so a sine of amplitude A
    peaks at magnitude A (independent of the window length)."""
    window = _window(config.n_fft).to(waveforms.device)
    spec = torch.stft(
        waveforms,
        config.n_fft,
        hop_length=config.hop_length,
        window=window,
        center=True,
        return_complex=True,
    )
    return spec * (2.0 / window.sum())


def log_mel(waveforms: torch.Tensor, config: MelConfig | None = None) -> torch.Tensor:
    """Log-mel features of a batch of waveforms.

    waveforms: ``(batch, samples)`` in [-1, 1].
    Returns ``(batch, frames, n_mels)`` with ``frames = samples // hop_length``;
    silence is -1 and a full-scale tone about +1.
    """
    config = config or MelConfig.from_profile()
    if waveforms.dim() != 2:
        raise ValueError(
            f"waveforms should be (batch, samples); got {tuple(waveforms.shape)}. "
            "For one clip use waveform[None]."
        )
    n_frames = config.n_frames(waveforms.shape[-1])
    if n_frames == 0:
        raise ValueError(
            f"waveforms have {waveforms.shape[-1]} samples, fewer than one hop "
            f"({config.hop_length}); nothing to turn into frames"
        )
    spec = _stft(waveforms.float(), config)[..., :n_frames]
    power = spec.real.square() + spec.imag.square()  # |X|^2 without a square root
    mel = power.transpose(1, 2) @ mel_filterbank(config).to(waveforms.device)
    return (torch.log(mel + LOG_EPS) - _LOG_SHIFT) / _LOG_SCALE


@lru_cache(maxsize=16)
def _inverse_filterbank(config: MelConfig) -> torch.Tensor:
    # Least squares: the linear spectrum whose mel projection is closest to the target.
    return torch.linalg.pinv(mel_filterbank(config))


def mel_to_waveform(
    mels: torch.Tensor,
    config: MelConfig | None = None,
    n_iter: int = 32,
    momentum: float = 0.99,
    seed: int = 0,
) -> torch.Tensor:
    """Turn log-mel features back into sound you can listen to.

    mels: ``(batch, frames, n_mels)`` as made by :func:`log_mel`.
    Returns waveforms ``(batch, frames * hop_length)``.

    Step 1 undoes the log and the mel bands (least squares via the pseudo-inverse of
    the filterbank, negative power clipped to 0). Step 2 is fast Griffin-Lim: it
    alternates between "keep these magnitudes" and "be the STFT of some real signal"
    until a phase that fits emerges.
    """
    config = config or MelConfig.from_profile()
    if mels.dim() != 3 or mels.shape[-1] != config.n_mels:
        raise ValueError(
            f"mels should be (batch, frames, {config.n_mels}); got {tuple(mels.shape)}"
        )
    batch, n_frames, _ = mels.shape
    mel_power = (torch.exp(mels.float() * _LOG_SCALE + _LOG_SHIFT) - LOG_EPS).clamp(min=0)
    power = (mel_power @ _inverse_filterbank(config).to(mels.device)).clamp(min=0)
    window = _window(config.n_fft).to(mels.device)
    magnitude = power.sqrt().transpose(1, 2) * (window.sum() / 2.0)
    # log_mel dropped the STFT's last (half-empty) frame; give it back as silence.
    magnitude = torch.cat([magnitude, magnitude.new_zeros(batch, config.n_freqs, 1)], dim=2)
    n_samples = n_frames * config.hop_length

    generator = torch.Generator().manual_seed(seed)
    phase = torch.rand(magnitude.shape, generator=generator).to(mels.device) * 2 * math.pi
    angles = torch.polar(torch.ones_like(magnitude), phase)
    previous = torch.zeros_like(angles)
    stft_args = {"n_fft": config.n_fft, "hop_length": config.hop_length, "window": window}
    for _ in range(n_iter):
        waveform = torch.istft(magnitude * angles, length=n_samples, **stft_args)
        rebuilt = torch.stft(waveform, center=True, return_complex=True, **stft_args)
        angles = rebuilt - previous * (momentum / (1 + momentum))
        angles = angles / (angles.abs() + 1e-16)
        previous = rebuilt
    waveform = torch.istft(magnitude * angles, length=n_samples, **stft_args)
    return waveform.clamp(-1, 1)


def _check_frames_per_token(frames_per_token: int) -> None:
    if not isinstance(frames_per_token, int) or frames_per_token <= 0:
        raise ValueError(f"frames_per_token should be a positive int; got {frames_per_token!r}")


def frame_audio(mels: torch.Tensor, frames_per_token: int) -> torch.Tensor:
    """Group consecutive log-mel frames into audio tokens.

    mels: ``(batch, frames, n_mels)`` -> ``(batch, frames // k, k * n_mels)`` with
    ``k = frames_per_token``; token ``t`` holds frames ``t*k .. t*k + k - 1`` in time order.
    """
    if mels.dim() != 3:
        raise ValueError(f"mels should be (batch, frames, n_mels); got {tuple(mels.shape)}")
    _check_frames_per_token(frames_per_token)
    batch, frames, n_mels = mels.shape
    if frames % frames_per_token:
        raise ValueError(
            f"{frames} frames do not split into tokens of {frames_per_token} frames; "
            f"choose a divisor of {frames} or trim the mels first"
        )
    return mels.reshape(batch, frames // frames_per_token, frames_per_token * n_mels)


def unframe_audio(tokens: torch.Tensor, frames_per_token: int) -> torch.Tensor:
    """Inverse of :func:`frame_audio`: ``(batch, n_tokens, k * n_mels)`` ->
    ``(batch, n_tokens * k, n_mels)``."""
    if tokens.dim() != 3:
        raise ValueError(
            f"audio tokens should be (batch, n_tokens, frames_per_token * n_mels); "
            f"got {tuple(tokens.shape)}"
        )
    _check_frames_per_token(frames_per_token)
    batch, n_tokens, width = tokens.shape
    if width % frames_per_token:
        raise ValueError(
            f"token width {width} is not a multiple of frames_per_token={frames_per_token}"
        )
    return tokens.reshape(batch, n_tokens * frames_per_token, width // frames_per_token)


def audio_token_ms(frames_per_token: int, config: MelConfig | None = None) -> float:
    """Milliseconds of sound one audio token covers."""
    config = config or MelConfig.from_profile()
    return frames_per_token * config.frame_ms
