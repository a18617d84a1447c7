"""Text -> image decoder: cache vs teacher forcing, padding, guidance, learning."""

import pytest
import torch

from omni_edu.model.heads.text_to_image import (
    TextToImage,
    TextToImageConfig,
    encode_captions,
    generate_pictures,
    patches_to_tokens,
    tokens_to_images,
    train_text_to_image,
)
from omni_edu.model.transformer import DecoderConfig


class Words:
    """A stand-in tokenizer: <pad> = 0, then one id per word."""

    pad_id = 0

    def __init__(self, words):
        self.ids = {w: i + 1 for i, w in enumerate(words)}

    def encode(self, text):
        return [self.ids[w] for w in text.split()]


def tiny(head: str, **overrides) -> TextToImage:
    torch.manual_seed(0)
    config = TextToImageConfig(
        head=head,
        text_vocab_size=10,
        max_text_len=5,
        n_image_tokens=4,
        image_vocab_size=6,
        token_dim=3,
        decoder=DecoderConfig(d_model=32, n_layers=1, n_heads=2, max_seq_len=16),
        flow_width=32,
        flow_depth=1,
        **overrides,
    )
    return TextToImage(config)


CAPTIONS = torch.tensor([[0, 0, 3, 4, 5], [0, 0, 0, 1, 2]])


def test_encode_captions_left_pads():
    words = Words(["a", "red", "dot"])
    ids = encode_captions(words, ["a red dot", "dot"], max_len=4)
    assert ids.tolist() == [[0, 1, 2, 3], [0, 0, 0, 3]]
    with pytest.raises(ValueError, match="more than max_len"):
        encode_captions(words, ["a red dot"], max_len=2)


def test_patch_tokens_round_trip():
    images = torch.rand(2, 3, 8, 8)
    tokens = patches_to_tokens(images, 4)
    assert tokens.shape == (2, 4, 48) and tokens.min() >= -1 and tokens.max() <= 1
    torch.testing.assert_close(tokens_to_images(tokens, 4, 8), images)


def test_cached_generation_matches_teacher_forcing():
    model = tiny("vq").eval()
    tokens = model.generate(CAPTIONS, temperature=0.0)
    assert tokens.shape == (2, 4) and tokens.dtype == torch.int64
    logits = model.head(model.hidden_states(CAPTIONS, tokens))
    assert torch.equal(logits.argmax(-1), tokens)


def test_padding_is_invisible():
    model = tiny("flow").eval()
    patches = torch.randn(2, 4, 3)
    before = model.hidden_states(CAPTIONS, patches)
    with torch.no_grad():
        model.text_embed.weight[0] = 100 * torch.randn(32)  # what a pad "says"
    torch.testing.assert_close(model.hidden_states(CAPTIONS, patches), before)


def test_guidance_zero_is_the_unconditional_model():
    model = tiny("vq").eval()
    unguided = model.generate(CAPTIONS, temperature=0.0, guidance=0.0)
    empty = model.generate(torch.zeros_like(CAPTIONS), temperature=0.0)
    assert torch.equal(unguided, empty)
    flow = tiny("flow").eval()
    same = [
        flow.generate(CAPTIONS, steps=2, guidance=g, generator=torch.Generator().manual_seed(0))
        for g in (1.0, 1.0)
    ]
    torch.testing.assert_close(same[0], same[1])
    assert flow.generate(CAPTIONS, steps=2, guidance=3.0).shape == (2, 4, 3)


@pytest.mark.parametrize("head", ["vq", "flow"])
def test_decoder_learns_to_draw_each_caption(head):
    """Two captions, two fixed images: after training, each caption draws its own."""
    model = tiny(head, caption_dropout=0.0)
    if head == "vq":
        targets = torch.tensor([[1, 2, 3, 4], [5, 5, 0, 0]])
    else:
        targets = torch.tensor([[0.8, -0.8, 0.0]]).repeat(4, 1)
        targets = torch.stack([targets, -targets])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80 if head == "vq" else 150):
        loss = model.loss(CAPTIONS, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    drawn = model.generate(CAPTIONS, temperature=0.0, steps=8)
    if head == "vq":
        assert torch.equal(drawn, targets)
    else:
        assert (drawn - targets).abs().mean() < 0.3


def test_generate_pictures_reports_the_cost():
    model = tiny("flow").eval()
    out = generate_pictures(model, CAPTIONS, patch=1, image_size=2, steps=3)
    assert out.pictures.shape == (2, 3, 2, 2)
    assert out.decoder_passes == 4 and out.head_passes == 4 * 3
    guided = generate_pictures(model, CAPTIONS, patch=1, image_size=2, steps=3, guidance=2.0)
    assert guided.decoder_passes == 8 and guided.head_passes == 24


def test_train_text_to_image_is_reproducible_and_learns():
    targets = torch.tensor([[1, 2, 3, 4], [5, 5, 0, 0]])
    runs = []
    for _ in range(2):
        model = tiny("vq", caption_dropout=0.0)
        history = train_text_to_image(
            model, CAPTIONS, targets, steps=30, batch_size=4, lr=1e-2, progress=False
        )
        runs.append(history.losses["loss"])
    assert runs[0] == runs[1]  # same seed, same batches, same numbers
    assert runs[0][-1] < 0.5 * runs[0][0]
    with pytest.raises(ValueError, match="captions but"):
        train_text_to_image(tiny("vq"), CAPTIONS, targets[:1], steps=1, batch_size=2)
