"""VQ-VAE and vector quantiser: gradients, codebook maintenance, round trips of both paths
(codes and continuous latents), quantiser dropout (FSQ itself: test_fsq.py)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edu.model.heads import (
    VQVAE,
    VectorQuantizer,
    VQVAEConfig,
    codebook_usage,
    ema_codebook_update,
    kmeans,
    nearest_code,
    quantize_straight_through,
    vq_loss_terms,
)
from omni_edu.model.heads.vq import AudioVQVAE, AudioVQVAEConfig, VQVAEOutput
from omni_edu.parts.tokenizers import train_autoencoder


def boxes(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    """Coloured rectangles on a grey background, ``(n, 3, size, size)`` in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, size, size), 0.5)
    for i in range(n):
        x0, y0 = torch.randint(0, size - 6, (2,), generator=g).tolist()
        w, h = torch.randint(3, 7, (2,), generator=g).tolist()
        images[i, :, y0 : y0 + h, x0 : x0 + w] = torch.rand(3, 1, 1, generator=g)
    return images


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 20), k=st.integers(1, 10), d=st.integers(1, 5), seed=st.integers(0, 99))
def test_nearest_code_matches_brute_force(n, k, d, seed):
    g = torch.Generator().manual_seed(seed)
    z, codebook = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    brute = ((z[:, None, :] - codebook[None, :, :]) ** 2).sum(-1)
    chosen = brute.gather(1, nearest_code(z, codebook)[:, None]).squeeze(1)
    torch.testing.assert_close(chosen, brute.min(1).values)


def test_straight_through_passes_gradient_unchanged():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(7, 3, generator=g, requires_grad=True)
    codebook = torch.randn(5, 3, generator=g)
    z_q, indices = quantize_straight_through(z, codebook)
    torch.testing.assert_close(z_q, codebook[indices])  # forward: the codes
    upstream = torch.randn(7, 3, generator=g)
    (z_q * upstream).sum().backward()
    torch.testing.assert_close(z.grad, upstream)  # backward: the identity


def test_vq_vae_encoder_output_gets_the_decoders_gradient():
    """Inside the model: d loss / d encoder output == d loss / d quantised output."""
    torch.manual_seed(0)
    quantizer = VectorQuantizer(codebook_size=8, code_dim=4, beta=0.0)
    z = torch.randn(2, 3, 3, 4, requires_grad=True)
    out = quantizer(z)
    out.z_q.retain_grad()
    (out.z_q**2).sum().backward()  # beta = 0: the only path to z is straight-through
    torch.testing.assert_close(z.grad, out.z_q.grad)


def test_loss_terms_have_their_stop_gradients():
    z = torch.tensor([[1.0, 2.0]], requires_grad=True)
    codes = torch.tensor([[0.0, 0.0]], requires_grad=True)
    codebook_loss, commitment_loss = vq_loss_terms(z, codes)
    assert codebook_loss.item() == pytest.approx(2.5)  # mean of 1^2 and 2^2
    codebook_loss.backward()
    assert z.grad is None  # the codebook loss does not move the encoder
    assert codes.grad.abs().sum() > 0
    codes.grad = None
    commitment_loss.backward()
    assert codes.grad is None  # the commitment loss does not move the codes
    assert z.grad.abs().sum() > 0


def test_ema_update_matches_hand_computation():
    cluster_size = torch.tensor([1.0, 1.0])
    embed_sum = torch.tensor([[0.0], [5.0]])
    z = torch.tensor([[1.0], [2.0], [10.0]])
    indices = torch.tensor([0, 0, 1])
    decay, eps = 0.5, 0.1
    new_size, new_sum, codebook = ema_codebook_update(
        cluster_size, embed_sum, z, indices, decay, eps
    )
    # code 0 received 1 and 2 (count 2, sum 3); code 1 received 10 (count 1, sum 10)
    size = [0.5 * 1 + 0.5 * 2, 0.5 * 1 + 0.5 * 1]  # [1.5, 1.0]
    total_sum = [0.5 * 0 + 0.5 * 3, 0.5 * 5 + 0.5 * 10]  # [1.5, 7.5]
    total = sum(size)
    smoothed = [(s + eps) / (total + 2 * eps) * total for s in size]
    torch.testing.assert_close(new_size, torch.tensor(size))
    torch.testing.assert_close(new_sum, torch.tensor(total_sum)[:, None])
    expected = torch.tensor([[total_sum[0] / smoothed[0]], [total_sum[1] / smoothed[1]]])
    torch.testing.assert_close(codebook, expected)


def test_ema_quantizer_moves_codes_to_the_data():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(codebook_size=2, code_dim=2, ema=True, decay=0.8)
    quantizer.codebook.data = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    quantizer.embed_sum.copy_(quantizer.codebook.data)
    z = torch.tensor([[-3.0, 1.0], [3.0, -1.0]]).repeat(16, 1)
    for _ in range(60):
        quantizer(z)
    assert not quantizer.codebook.requires_grad
    torch.testing.assert_close(quantizer.codebook.data, z[:2], atol=0.05, rtol=0)


def test_dead_codes_get_restarted():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(codebook_size=4, code_dim=2, dead_code_steps=3)
    quantizer.codebook.data = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [50.0, 50.0]])
    z = torch.rand(32, 2)  # all near codes 0-2; code 3 is never chosen
    quantizer(z)
    quantizer(z)
    assert quantizer.restarts == 0
    torch.testing.assert_close(quantizer.codebook.data[3], torch.tensor([50.0, 50.0]))
    quantizer(z)  # third step unused: restart
    assert quantizer.restarts == 1
    new_code = quantizer.codebook.data[3]
    assert ((z - new_code).abs().sum(1) < 1e-6).any(), "restarted code should be an encoder output"
    quantizer.eval()
    quantizer(z)  # no codebook maintenance at evaluation time
    assert quantizer.restarts == 1


def test_kmeans_init_puts_one_code_on_each_cluster():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-5.0, -5.0], [-5.0, 5.0], [5.0, -5.0], [5.0, 5.0]])
    z = centres.repeat(25, 1) + 0.1 * torch.randn(100, 2, generator=g)
    torch.manual_seed(1)
    quantizer = VectorQuantizer(codebook_size=4, code_dim=2, kmeans_init=True)
    out = quantizer(z)
    assert bool(quantizer.initialised)
    distance = torch.cdist(centres, quantizer.codebook.data).min(1).values
    assert distance.max() < 0.2
    assert out.usage == 1.0 and out.perplexity == pytest.approx(4.0, rel=1e-3)
    assert kmeans(z, 4, generator=g).shape == (4, 2)


def test_codebook_usage_uniform_and_collapsed():
    usage, perplexity = codebook_usage(torch.arange(8).repeat(3), 8)
    assert usage == 1.0 and perplexity == pytest.approx(8.0)
    usage, perplexity = codebook_usage(torch.zeros(10, dtype=torch.long), 8)
    assert usage == 1 / 8 and perplexity == pytest.approx(1.0)


def test_indices_round_trip_rebuilds_the_reconstruction():
    torch.manual_seed(0)
    model = VQVAE(VQVAEConfig(codebook_size=16, channels=8)).eval()
    images = boxes(4)
    tokens = model.encode_to_indices(images)
    assert tokens.shape == (4, model.tokens_per_image) == (4, 16)
    assert tokens.dtype == torch.int64 and tokens.max() < model.vocab_size
    rebuilt = model.decode_from_indices(tokens)
    torch.testing.assert_close(rebuilt, model(images).recon.clamp(0, 1))
    with pytest.raises(ValueError, match=r"\(batch, 16\)"):
        model.decode_from_indices(tokens[:, :5])
    with pytest.raises(ValueError, match=r"\(batch, 3, 16, 16\)"):
        model.encode_to_indices(images[0])


def test_fsq_autoencoder_tokens_round_trip():
    model = VQVAE(VQVAEConfig(quantizer="fsq", fsq_levels=(5, 5, 3), channels=8)).eval()
    images = boxes(3)
    tokens = model.encode_to_indices(images)
    assert model.vocab_size == 75 and tokens.max() < 75
    torch.testing.assert_close(model.decode_from_indices(tokens), model(images).recon.clamp(0, 1))


def test_continuous_autoencoder_has_no_tokens():
    model = VQVAE(VQVAEConfig(quantizer="none", channels=8))
    assert model.vocab_size is None
    with pytest.raises(ValueError, match="no token ids"):
        model.encode_to_indices(boxes(2))
    with pytest.raises(ValueError, match="quantizer should be"):
        VQVAE(VQVAEConfig(quantizer="vqq"))


def test_encoding_to_indices_never_changes_the_codebook():
    """A tokenizer in training mode must not run EMA, restarts or k-means when it only
    tokenizes (a language model might call it while its own modules are training)."""
    torch.manual_seed(0)
    model = VQVAE(
        VQVAEConfig(codebook_size=16, channels=8, ema=True, kmeans_init=True, dead_code_steps=1)
    ).train()
    before = {k: v.clone() for k, v in model.quantizer.state_dict().items()}
    tokens = model.encode_to_indices(boxes(8))
    for key, value in model.quantizer.state_dict().items():
        assert torch.equal(value, before[key]), key
    model(boxes(8))  # a training forward pass does maintain the codebook
    assert not torch.equal(model.quantizer.codebook, before["codebook"])
    assert tokens.shape == (8, 16)


def sounds(n: int, frames: int = 16, n_mels: int = 8, seed: int = 0) -> torch.Tensor:
    """Tones that start at random frames: ``(n, frames, n_mels)`` log-mel-like, in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    mels = torch.full((n, frames, n_mels), -1.0)
    for i in range(n):
        start, band = torch.randint(0, frames - 4, (1,), generator=g).item(), i % n_mels
        mels[i, start:, band] = 0.5
    return mels


def test_audio_tokenizer_gives_one_code_per_audio_token_and_round_trips():
    torch.manual_seed(0)
    config = AudioVQVAEConfig(n_mels=8, frames_per_token=4, channels=16, codebook_size=32)
    model = AudioVQVAE(config).eval()
    mels = sounds(5)
    tokens = model.encode_to_indices(mels)
    assert tokens.shape == (5, 4) and tokens.dtype == torch.int64  # 16 frames / 4 per token
    assert model.vocab_size == 32 and tokens.max() < 32
    rebuilt = model.decode_from_indices(tokens)
    assert rebuilt.shape == mels.shape
    torch.testing.assert_close(rebuilt, model(mels).recon.clamp(-1, 1))
    with pytest.raises(ValueError, match=r"\(batch, frames, 8\) with frames a multiple of 4"):
        model.encode_to_indices(sounds(2, frames=14))
    with pytest.raises(ValueError, match="at least one audio token"):
        model.decode_from_indices(tokens[:, :0])
    fsq = AudioVQVAE(AudioVQVAEConfig(n_mels=8, channels=16, quantizer="fsq", fsq_levels=(3, 3)))
    assert fsq.eval().encode_to_indices(mels).max() < 9


@pytest.mark.parametrize("quantizer", ["vq", "fsq", "none"])
def test_latents_round_trip_on_the_grid_of_the_codes(quantizer):
    torch.manual_seed(0)
    config = VQVAEConfig(quantizer=quantizer, codebook_size=16, channels=8, fsq_levels=(4, 4, 4))
    model = VQVAE(config).eval()
    images = boxes(4)
    latents = model.encode_latents(images)
    assert latents.shape == (4, 16, model.latent_dim) and latents.dtype == torch.float32
    assert model.latent_dim == (3 if quantizer == "fsq" else 8)
    decoded = model.decode_latents(latents)
    assert decoded.shape == images.shape and 0 <= decoded.min() and decoded.max() <= 1
    # decode_latents(encode_latents(x)) is the continuous path's reconstruction
    torch.testing.assert_close(decoded, model(images, quantize=False).recon.clamp(0, 1))
    # One latent per patch, row by row like the ids: token t is patch (t // 4, t % 4).
    z = model.encode(images)  # (batch, 4, 4, code_dim)
    squash = torch.tanh if quantizer == "fsq" else (lambda x: x)
    torch.testing.assert_close(latents[:, 6], squash(z[:, 1, 2]))
    if quantizer != "none":
        ids = model.encode_to_indices(images)
        assert ids.shape == latents.shape[:2]
    with pytest.raises(ValueError, match=rf"\(batch, n_tokens, {model.latent_dim}\)"):
        model.decode_latents(latents[..., :-1])
    with pytest.raises(ValueError, match=r"ids \(batch, 16\) or latents \(batch, 16, latent_dim\)"):
        model.decode_latents(latents[:, :5])


def test_audio_latents_one_per_audio_token():
    torch.manual_seed(0)
    config = AudioVQVAEConfig(n_mels=8, channels=16, codebook_size=32, quantizer_dropout=0.5)
    model = AudioVQVAE(config).eval()
    mels = sounds(5)  # 16 frames: 4 audio tokens
    latents = model.encode_latents(mels)
    assert latents.shape == (5, 4, 8)
    decoded = model.decode_latents(latents)
    assert decoded.shape == mels.shape and -1 <= decoded.min() and decoded.max() <= 1
    torch.testing.assert_close(decoded, model(mels, quantize=False).recon.clamp(-1, 1))


def test_quantizer_dropout_decodes_that_share_from_the_latents():
    """In training mode, each example is decoded either from its codes or from its latents,
    about ``quantizer_dropout`` of them from the latents; in eval mode always from codes."""
    torch.manual_seed(0)
    # No EMA, k-means or restarts: a training forward pass then changes nothing.
    model = VQVAE(VQVAEConfig(codebook_size=16, channels=8, quantizer_dropout=0.3))
    images = boxes(400)
    model.eval()
    with torch.no_grad():
        coded = model(images).recon
        continuous = model(images, quantize=False).recon
        model.train()
        mixed = model(images).recon
    from_codes = (mixed - coded).flatten(1).abs().amax(1) < 1e-6
    from_latents = (mixed - continuous).flatten(1).abs().amax(1) < 1e-6
    assert (from_codes ^ from_latents).all()  # one or the other, never a blend
    assert 0.22 < from_latents.float().mean() < 0.38
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(images).recon, coded)
    with pytest.raises(ValueError, match=r"quantizer_dropout should be a share in \[0, 1\)"):
        VQVAEConfig(quantizer_dropout=1.0)
    assert model.config.describe() == "VQ K=16, quantiser dropout 0.3"
    assert VQVAEConfig(quantizer="fsq", fsq_levels=(4, 4, 4)).describe() == "FSQ 64 (4,4,4)"
    assert VQVAEConfig(quantizer="none", code_dim=3).describe() == "continuous (3 per token)"


class PlainVQVAE(VQVAE):
    """The VQ-VAE's forward pass before quantiser dropout existed: encode, quantise, decode."""

    def forward(self, x: torch.Tensor, quantize: bool = True) -> VQVAEOutput:
        quant = self.quantizer(self.encode(x))
        recon = self.decode(quant.z_q)
        recon_loss = torch.nn.functional.mse_loss(recon, x)
        return VQVAEOutput(recon, recon_loss + quant.loss, recon_loss, quant)


def test_quantizer_dropout_zero_trains_exactly_like_the_plain_vqvae():
    """Share 0 draws no random numbers and decodes every example from its codes, so the
    weights after training (dead-code restarts draw from the same stream) are identical."""
    weights = []
    for model_class in (VQVAE, PlainVQVAE):
        torch.manual_seed(0)
        config = VQVAEConfig(
            codebook_size=32, channels=8, ema=True, kmeans_init=True, dead_code_steps=2
        )
        model = model_class(config)
        train_autoencoder(model, boxes(64), steps=12, batch_size=16, progress=False)
        assert model.quantizer.restarts > 0  # the random stream was used after the forward
        weights.append(model.state_dict())
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key
