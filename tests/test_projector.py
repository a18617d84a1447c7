"""The omni-token projector: modality embeddings, clear shape errors, position-free content."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edu.modalities import Modality
from omni_edu.model.interleave import audio_segment, image_segment, pack, text_segment
from omni_edu.model.projector import OmniTokenProjector, ProjectorConfig
from omni_edu.profiles import get_profile

CONFIG = ProjectorConfig(d_model=16, vocab_size=20, image_dim=12, audio_dim=6)


def projector(**overrides) -> OmniTokenProjector:
    torch.manual_seed(0)
    return OmniTokenProjector(ProjectorConfig(**{**CONFIG.__dict__, **overrides}))


def test_each_modality_projects_to_d_model():
    proj = projector()
    assert proj.embed_text(torch.tensor([[1, 2, 3]])).shape == (1, 3, 16)
    assert proj.embed_image(torch.randn(2, 4, 12)).shape == (2, 4, 16)
    assert proj.embed_audio(torch.randn(2, 5, 6)).shape == (2, 5, 16)


def test_modality_embeddings_can_be_switched_off():
    on, off = projector(), projector(modality_embeddings=False)
    assert off.modality is None
    assert not any("modality" in name for name, _ in off.named_parameters())
    off.load_state_dict(on.state_dict(), strict=False)  # same projectors, no modality vectors
    ids, patches = torch.tensor([[4, 5]]), torch.randn(1, 3, 12)
    assert torch.equal(off.embed_text(ids), on.text(ids))
    assert torch.allclose(
        on.embed_text(ids) - off.embed_text(ids), on.modality.weight[Modality.TEXT]
    )
    diff = on.embed_image(patches) - off.embed_image(patches)
    assert torch.allclose(diff, on.modality.weight[Modality.IMAGE].expand_as(diff), atol=1e-6)


def test_interleaved_embedding_matches_the_per_modality_projectors():
    proj = projector()
    ids, patches, frames = torch.tensor([7, 8, 9]), torch.randn(4, 12), torch.randn(2, 6)
    p = pack([[text_segment(ids), image_segment(patches), audio_segment(frames)]])
    h = proj(p)
    assert h.shape == (1, 9, 16)
    assert torch.allclose(h[0, :3], proj.embed_text(ids[None])[0])
    assert torch.allclose(h[0, 3:7], proj.embed_image(patches[None])[0], atol=1e-6)
    assert torch.allclose(h[0, 7:], proj.embed_audio(frames[None])[0], atol=1e-6)


def test_padding_embeds_to_zero_and_gradients_reach_every_projector():
    proj = projector()
    p = pack(
        [
            [
                text_segment([1, 2]),
                image_segment(torch.randn(4, 12)),
                audio_segment(torch.randn(1, 6)),
            ],
            [text_segment([3])],
        ]
    )
    h = proj(p)
    assert not h[1, 1:].any()
    h.sum().backward()
    for name, param in proj.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 6), st.integers(0, 6))
def test_an_image_projects_the_same_wherever_it_sits(before, after):
    """The projector has no notion of position (RoPE adds that inside the decoder), so
    the same image gives the same vectors at any offset in the sequence."""
    proj = projector()
    patches = torch.randn(4, 12, generator=torch.Generator().manual_seed(1))
    image = image_segment(patches)
    docs = [[image]]
    if before:
        docs.append([text_segment(list(range(before))), image])
    if after:
        docs.append([image, text_segment(list(range(after)))])
    docs.append([text_segment([5] * (before + 1)), audio_segment(torch.randn(2, 6)), image])
    p = pack(docs)
    h = proj(p)
    reference = h[0, :4]
    for b, spans in enumerate(p.spans):
        s = next(s for s in spans if s.modality == Modality.IMAGE)
        assert torch.allclose(h[b, s.start : s.stop], reference, atol=1e-6)


def test_shape_errors_name_expected_and_received():
    proj = projector()
    with pytest.raises(
        ValueError, match=r"\(batch, n_patches, 12\); got \(2, 12\).*patch dimension"
    ):
        proj.embed_image(torch.randn(2, 12))
    with pytest.raises(ValueError, match=r"got \(2, 3, 7\).*should be 12"):
        proj.embed_image(torch.randn(2, 3, 7))
    with pytest.raises(ValueError, match=r"\(batch, n_tokens, 6\)"):
        proj.embed_audio(torch.randn(6))
    with pytest.raises(ValueError, match=r"\[0, 20\)"):
        proj.embed_text(torch.tensor([[3, 25]]))
    with pytest.raises(ValueError, match="int64"):
        proj.embed_text(torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"image features should be \(batch, seq, 12\)"):
        proj(pack([[image_segment(torch.randn(4, 5))]]))


def test_mlp_projector_and_profile_sizes():
    proj = projector(mlp=True)
    assert proj.embed_image(torch.randn(1, 2, 12)).shape == (1, 2, 16)
    profile = get_profile("ci")
    config = ProjectorConfig.from_profile(vocab_size=50, frames_per_token=2, profile=profile)
    assert config.d_model == profile.d_model
    assert config.image_dim == 3 * profile.patch_size**2
    assert config.audio_dim == 2 * profile.n_mels


def test_discrete_media_are_looked_up_in_their_own_table():

    torch.manual_seed(0)
    config = ProjectorConfig(
        d_model=8, vocab_size=10, image_dim=12, audio_dim=6, image_vocab_size=5
    )
    projector = OmniTokenProjector(config)
    packed = pack([[text_segment([1]), image_segment(torch.tensor([4, 0, 2, 2]), (2, 2))]])
    out = projector(packed)
    expected = projector.codes["image"].weight[[4, 0, 2, 2]] + projector.modality.weight[1]
    torch.testing.assert_close(out[0, 1:], expected)
    too_big = pack([[image_segment(torch.tensor([5, 0, 0, 0]), (2, 2))]])
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        projector(too_big)
