import torch

from omni_edu import grading
from omni_edu.lessons.omni_tokens.checks import (
    check_embed_interleaved,
    check_place_segments,
    embed_interleaved,
    place_segments,
)
from omni_edu.modalities import Modality
from omni_edu.model.interleave import SpecialTokens


def stub(*args, **kwargs):
    raise NotImplementedError(grading.STUB_MESSAGE)  # as make_exercises writes it


# --- embed_interleaved ------------------------------------------------------------------


def _project_positions(projector, modality, text_ids, image, audio):
    out = torch.zeros(*modality.shape, projector.config.d_model)
    for m, proj, x in (
        (Modality.TEXT, projector.text, text_ids),
        (Modality.IMAGE, projector.image, image),
        (Modality.AUDIO, projector.audio, audio),
    ):
        here = modality == m
        out[here] = proj(x[here])
    return out


def without_modality_embedding(projector, modality, text_ids, image, audio):
    # Plausible mistake: the per-modality projectors alone.
    return _project_positions(projector, modality, text_ids, image, audio)


def embedding_on_padding_too(projector, modality, text_ids, image, audio):
    # Plausible mistake: padding (-1) clamped to text and given the text embedding.
    out = _project_positions(projector, modality, text_ids, image, audio)
    if projector.modality is None:
        return out
    return out + projector.modality(modality.clamp(min=0))


def concatenated_by_modality(projector, modality, text_ids, image, audio):
    # Plausible mistake (the chapter's layout): all text, then all image, then all audio.
    rows = []
    for b in range(modality.shape[0]):
        m = modality[b]
        parts = [
            projector.embed_text(text_ids[b][m == Modality.TEXT][None])[0],
            projector.embed_image(image[b][m == Modality.IMAGE][None])[0],
            projector.embed_audio(audio[b][m == Modality.AUDIO][None])[0],
        ]
        row = torch.cat(parts)
        pad = torch.zeros(modality.shape[1] - len(row), projector.config.d_model)
        rows.append(torch.cat([row, pad]))
    return torch.stack(rows)


def test_embed_reference_passes():
    assert check_embed_interleaved(embed_interleaved).passed


def test_embed_position_by_position_with_masked_embedding_passes():
    def learner(projector, modality, text_ids, image, audio):
        out = _project_positions(projector, modality, text_ids, image, audio)
        if projector.modality is not None:
            real = (modality >= 0).unsqueeze(-1)
            out = out + real * projector.modality(modality.clamp(min=0))
        return out

    assert check_embed_interleaved(learner).passed


def test_embed_stub_is_not_implemented():
    assert check_embed_interleaved(stub).status == grading.NOT_IMPLEMENTED


def test_embed_plausible_mistakes_are_rejected():
    with grading.lenient():
        for wrong in (
            without_modality_embedding,
            embedding_on_padding_too,
            concatenated_by_modality,
        ):
            assert check_embed_interleaved(wrong).status == grading.FAILED, wrong.__name__


# --- place_segments ---------------------------------------------------------------------


def _walk(document, specials, group_by_modality=False, skip_markers=False):
    specials = specials or SpecialTokens()
    if group_by_modality:
        document = sorted(document, key=lambda s: int(s.modality))
    modality, ids = [], []

    def marker(token):
        if token is not None and not skip_markers:
            modality.append(int(Modality.TEXT))
            ids.append(token)

    marker(specials.bos)
    for seg in document:
        opening, closing = specials.around(seg.modality)
        marker(opening)
        modality += [int(seg.modality)] * len(seg)
        ids += seg.data.tolist() if seg.modality == Modality.TEXT else [0] * len(seg)
        marker(closing)
    marker(specials.eos)
    return torch.tensor(modality), torch.tensor(ids)


def test_place_reference_passes():
    assert check_place_segments(place_segments).passed


def test_place_walk_in_order_passes():
    assert check_place_segments(lambda doc, specials=None: _walk(doc, specials)).passed


def test_place_stub_is_not_implemented():
    assert check_place_segments(stub).status == grading.NOT_IMPLEMENTED


def test_place_plausible_mistakes_are_rejected():
    grouped = lambda doc, specials=None: _walk(doc, specials, group_by_modality=True)
    no_markers = lambda doc, specials=None: _walk(doc, specials, skip_markers=True)
    with grading.lenient():
        assert check_place_segments(grouped).status == grading.FAILED
        assert check_place_segments(no_markers).status == grading.FAILED
