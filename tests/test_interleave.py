"""Interleaved sequences: masks hide the future, positions, targets and round trips."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edu.modalities import PAD, Modality, TextTokenizer
from omni_edu.model import layout
from omni_edu.model.interleave import (
    IGNORE_INDEX,
    PackedBatch,
    Segment,
    SpecialTokens,
    attention_mask,
    audio_segment,
    image_segment,
    mrope_grid,
    next_token_targets,
    pack,
    text_segment,
    unpack,
)

IMAGE_DIM, AUDIO_DIM, VOCAB, CODES = 5, 3, 20, 8
SPECIALS = SpecialTokens(bos=1, eos=2, boi=3, eoi=4, boa=5, eoa=6)


@st.composite
def segments(draw):
    kind = draw(st.sampled_from(list(Modality)))
    predict = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    if kind == Modality.TEXT:
        ids = draw(st.lists(st.integers(7, VOCAB - 1), min_size=1, max_size=5))
        return text_segment(ids, predict=predict)
    if kind == Modality.IMAGE:
        grid = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
        if draw(st.booleans(), label="discrete"):
            codes = torch.randint(0, CODES, (grid[0] * grid[1],), generator=gen)
            return image_segment(codes, grid, predict=predict)
        patches = torch.randn(grid[0] * grid[1], IMAGE_DIM, generator=gen)
        return image_segment(patches, grid, predict=predict)
    n_frames = draw(st.integers(1, 4))
    if draw(st.booleans(), label="discrete"):  # code ids of a tokenizer, as in lesson 03
        return audio_segment(torch.randint(0, CODES, (n_frames,), generator=gen), predict)
    return audio_segment(torch.randn(n_frames, AUDIO_DIM, generator=gen), predict=predict)


def with_new_contents(document: list, seed: int) -> list:
    """The same layout (modalities, lengths, grids, flags, discrete or not), new contents."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for seg in document:
        if seg.data.dtype == torch.long:
            high = VOCAB if seg.modality == Modality.TEXT else CODES
            data = torch.randint(0, high, seg.data.shape, generator=gen)
        else:
            data = torch.randn(seg.data.shape, generator=gen)
        out.append(Segment(seg.modality, data, seg.grid, seg.predict))
    return out


@st.composite
def documents_sharing_layouts(draw):
    """A few layouts, each with several documents of its own contents, shuffled."""
    templates = draw(st.lists(st.lists(segments(), min_size=1, max_size=5), min_size=1, max_size=3))
    copies = [draw(st.integers(1, 4)) for _ in templates]
    docs = [with_new_contents(t, seed) for t, k in zip(templates, copies, strict=True)
            for seed in range(k)]  # fmt: skip
    return draw(st.permutations(docs))


documents = st.lists(st.lists(segments(), min_size=1, max_size=5), min_size=1, max_size=4)
options = st.fixed_dictionaries(
    {
        "specials": st.sampled_from([None, SPECIALS]),
        "bidirectional": st.sampled_from(
            [(), (Modality.IMAGE,), (Modality.AUDIO,), (Modality.IMAGE, Modality.AUDIO)]
        ),
        "pad_side": st.sampled_from(["right", "left"]),
    }
)


def packed_batches():
    return st.tuples(documents, options).map(
        lambda d: pack(d[0], image_dim=IMAGE_DIM, audio_dim=AUDIO_DIM, **d[1])
    )


@settings(max_examples=25, deadline=None)
@given(packed_batches())
def test_no_token_attends_to_a_later_text_token(p):
    later = torch.ones(p.seq_len, p.seq_len, dtype=torch.bool).triu(1)  # key after query
    later_text = later & (p.modality == Modality.TEXT)[:, None, :]
    assert not (p.attn_mask & later_text).any()


@settings(max_examples=25, deadline=None)
@given(packed_batches())
def test_mask_is_causal_outside_bidirectional_spans(p):
    later = torch.ones(p.seq_len, p.seq_len, dtype=torch.bool).triu(1)
    for b, spans in enumerate(p.spans):
        allowed = later.clone() & False
        for s in spans:
            if s.bidirectional:
                allowed[s.start : s.stop, s.start : s.stop] = True
        assert not (p.attn_mask[b] & later & ~allowed).any()


@settings(max_examples=25, deadline=None)
@given(packed_batches())
def test_bidirectional_spans_see_themselves_and_stay_hidden_from_the_past(p):
    for b, spans in enumerate(p.spans):
        for s in spans:
            if not s.bidirectional:
                continue
            assert p.attn_mask[b, s.start : s.stop, s.start : s.stop].all()
            assert not p.attn_mask[b, : s.start, s.start : s.stop].any()


@settings(max_examples=25, deadline=None)
@given(packed_batches())
def test_padding_is_never_attended_and_rows_are_never_empty(p):
    real = p.real
    # a real query never looks at a padding key
    assert not (p.attn_mask & real[:, :, None] & ~real[:, None, :]).any()
    # a padding query looks at itself only
    eye = torch.eye(p.seq_len, dtype=torch.bool)
    pad_rows = p.attn_mask[~real]
    assert torch.equal(pad_rows, eye[None].expand(p.batch_size, -1, -1)[~real])
    # and so SDPA never divides by zero
    q = torch.randn(p.batch_size, 1, p.seq_len, 4)
    out = F.scaled_dot_product_attention(q, q, q, attn_mask=p.attn_mask[:, None])
    assert torch.isfinite(out).all()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, VOCAB - 1), min_size=1, max_size=8), min_size=1, max_size=4)
)
def test_text_only_positions_are_0_to_n_and_mrope_rows_agree(id_lists):
    p = pack([[text_segment(ids)] for ids in id_lists])
    for b, ids in enumerate(id_lists):
        n = len(ids)
        assert p.positions[b, :n].tolist() == list(range(n))
        for row in range(3):
            assert torch.equal(p.mrope_positions[row, b], p.positions[b])
    # text only: the mask is plain causal on the real tokens
    assert torch.equal(
        p.attn_mask[0, : len(id_lists[0]), : len(id_lists[0])],
        torch.ones(len(id_lists[0]), len(id_lists[0])).tril().bool(),
    )


@settings(max_examples=25, deadline=None)
@given(packed_batches())
def test_targets_are_the_next_tokens(p):
    for b in range(p.batch_size):
        for i in range(p.seq_len):
            m = int(p.target_modality[b, i])
            if m == PAD:
                assert p.text_targets[b, i] == IGNORE_INDEX
                assert not p.image_targets[b, i].any() and not p.audio_targets[b, i].any()
                continue
            assert p.real[b, i] and p.modality[b, i + 1] == m  # the next token has that modality
            assert (p.text_targets[b, i] != IGNORE_INDEX) == (m == Modality.TEXT)
            if m == Modality.TEXT:
                assert p.text_targets[b, i] == p.text_ids[b, i + 1]
            elif m == Modality.IMAGE:
                assert torch.equal(p.image_targets[b, i], p.image[b, i + 1])
            else:
                assert torch.equal(p.audio_targets[b, i], p.audio[b, i + 1])
    for m in Modality:
        assert torch.equal(p.loss_mask(m), p.target_modality == m)


@settings(max_examples=40, deadline=None)
@given(packed_batches())
def test_targets_are_the_inputs_shifted_by_one_where_trained(p):
    target = p.target_modality[:, :-1]  # position i predicts token i + 1
    trained = target != PAD
    assert (p.target_modality[:, -1] == PAD).all()  # nothing after the last column
    assert torch.equal(target[trained], p.modality[:, 1:][trained])
    text = target == Modality.TEXT
    assert torch.equal(p.text_targets[:, :-1][text], p.text_ids[:, 1:][text])
    assert (p.text_targets[:, :-1][~text] == IGNORE_INDEX).all()
    coded = trained & ~text & (p.codes[:, 1:] >= 0)  # a discrete picture or sound next
    assert torch.equal(p.code_targets[:, :-1][coded], p.codes[:, 1:][coded])
    assert (p.code_targets[:, :-1][~coded] == IGNORE_INDEX).all()
    for m, features, targets in (
        (Modality.IMAGE, p.image, p.image_targets),
        (Modality.AUDIO, p.audio, p.audio_targets),
    ):
        here = (target == m) & ~coded
        assert torch.equal(targets[:, :-1][here], features[:, 1:][here])
        assert not targets[:, :-1][~here].any() and not targets[:, -1].any()


def assert_row_equals(p: PackedBatch, row: int, alone: PackedBatch) -> None:
    """Row ``row`` of ``p`` is the one-row batch ``alone``, field by field."""
    for f in dataclasses.fields(p):
        x, y = getattr(p, f.name), getattr(alone, f.name)
        if f.name == "mrope_positions":
            assert torch.equal(x[:, row], y[:, 0]), f.name
        elif f.name == "spans":
            assert x[row] == y[0], f.name
        else:
            assert torch.equal(x[row], y[0]), f.name


@settings(max_examples=30, deadline=None)
@given(documents_sharing_layouts(), options)
def test_documents_that_share_a_layout_pack_as_if_each_were_alone(docs, opts):
    """pack lays each distinct layout out once and copies contents into its rows: every
    row must be what packing its document alone gives."""
    p = pack(docs, image_dim=IMAGE_DIM, audio_dim=AUDIO_DIM, **opts)
    for row, doc in enumerate(docs):
        alone = pack([doc], image_dim=IMAGE_DIM, audio_dim=AUDIO_DIM, pad_to=p.seq_len, **opts)
        assert_row_equals(p, row, alone)
    assert unpack(p) == docs


def test_a_layout_is_worked_out_once_however_many_documents_share_it(monkeypatch):
    calls = []

    def counting(document, *args):
        calls.append(len(document))
        return document_layout(document, *args)

    document_layout = layout.document_layout
    monkeypatch.setattr(layout, "document_layout", counting)
    caption = [text_segment([7, 8, 9]), image_segment(torch.randn(4, IMAGE_DIM))]
    sound = [audio_segment(torch.randn(2, AUDIO_DIM))]
    docs = [with_new_contents(d, seed) for seed in range(6) for d in (caption, sound)]
    p = pack(docs, specials=SPECIALS)
    assert sorted(calls) == [1, 2] and p.batch_size == 12


@pytest.mark.parametrize("pad_side", ["right", "left"])
def test_every_any_to_any_task_packs_as_if_each_document_were_alone(pad_side):
    """The pool of lesson 06 (every task's layout, pictures as features and as codes)."""
    from omni_edu.data import OmniWorld
    from omni_edu.parts.any_to_any import AnyToAnyData
    from omni_edu.profiles import get_profile

    world = OmniWorld("train", seed=1, profile=get_profile("ci"), caption_style="varied")
    data = AnyToAnyData(world, 3, question_modality="audio")
    docs = [data.document(task, i) for task in data.tasks for i in range(len(data))]
    coded = [
        [
            image_segment(torch.randint(0, CODES, (len(s),)), s.grid, s.predict)
            if s.modality == Modality.IMAGE
            else s
            for s in doc
        ]
        for doc in docs
    ]
    dims = {"image_dim": data.image_dim, "audio_dim": data.audio_dim}
    for batch in (docs, coded):
        p = pack(batch, specials=data.specials, pad_side=pad_side, **dims)
        for row, doc in enumerate(batch):
            alone = pack([doc], specials=data.specials, pad_side=pad_side, pad_to=p.seq_len, **dims)
            assert_row_equals(p, row, alone)


@settings(max_examples=25, deadline=None)
@given(documents, options)
def test_loss_covers_every_trainable_next_token(docs, opts):
    """Every real token after the first is predicted unless it is marked predict=False or
    it is visible from the previous token (inside one bidirectional span)."""
    p = pack(docs, image_dim=IMAGE_DIM, audio_dim=AUDIO_DIM, **opts)
    for b, spans in enumerate(p.spans):
        first = spans[0].start  # the document's first token has nothing before it
        for s in spans:
            for j in range(max(s.start, first + 1), s.stop):
                expected = s.predict and not (s.bidirectional and j > s.start)
                assert bool(p.target_modality[b, j - 1] != PAD) == expected
        assert p.target_modality[b, spans[-1].stop - 1] == PAD  # nothing after the end


@settings(max_examples=25, deadline=None)
@given(documents, options)
def test_unpack_returns_the_documents(docs, opts):
    p = pack(docs, image_dim=IMAGE_DIM, audio_dim=AUDIO_DIM, **opts)
    assert unpack(p) == docs


def test_mrope_image_grid_then_text_continues_after_the_largest_position():
    patches = torch.randn(6, IMAGE_DIM)
    p = pack([[text_segment([7, 8]), image_segment(patches, (2, 3)), text_segment([9])]])
    t, h, w = p.mrope_positions[:, 0].tolist()
    # text 0, 1; image starts at 2: time fixed, height = 2 + row, width = 2 + col
    assert t == [0, 1, 2, 2, 2, 2, 2, 2, 5]
    assert h == [0, 1, 2, 2, 2, 3, 3, 3, 5]
    assert w == [0, 1, 2, 3, 4, 2, 3, 4, 5]
    assert p.positions[0].tolist() == list(range(9))


def test_audio_positions_advance_one_step_per_token_on_every_row():
    p = pack([[audio_segment(torch.randn(3, AUDIO_DIM)), text_segment([7])]])
    for row in range(3):
        assert p.mrope_positions[row, 0].tolist() == [0, 1, 2, 3]


def test_special_tokens_wrap_media_and_documents():
    doc = [
        text_segment([9]),
        image_segment(torch.randn(4, IMAGE_DIM)),
        audio_segment(torch.randn(2, AUDIO_DIM)),
    ]
    p = pack([doc], specials=SPECIALS)
    assert p.describe() == "TTTIIIITTAATT"
    assert p.text_ids[0].tolist()[:3] == [1, 9, 3]
    assert p.text_ids[0, 7:9].tolist() == [4, 5]
    assert p.text_ids[0, 11:].tolist() == [6, 2]
    assert unpack(p) == [doc]


def test_special_tokens_from_vocab():
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<boi>": 4, "<eoi>": 5}
    assert SpecialTokens.from_vocab(vocab) == SpecialTokens(bos=1, eos=2, boi=4, eoi=5)
    tokenizer = TextTokenizer(["red", "circle"])
    specials = SpecialTokens.from_vocab(tokenizer.ids)
    assert (specials.boi, specials.eoa, specials.bos) == (
        tokenizer.boi_id,
        tokenizer.eoa_id,
        tokenizer.bos_id,
    )


def test_bidirectional_image_drops_copyable_targets_but_keeps_the_first_patch():
    doc = [text_segment([7, 8]), image_segment(torch.randn(4, IMAGE_DIM))]
    p = pack([doc], bidirectional={Modality.IMAGE})
    assert p.describe() == "TT[IIII]"
    assert p.target_modality[0].tolist() == [0, 1, -1, -1, -1, -1]


def test_prompt_segments_are_read_but_not_trained():
    doc = [text_segment([7, 8], predict=False), text_segment([9, 10])]
    p = pack([doc])
    assert p.text_targets[0].tolist() == [IGNORE_INDEX, 9, 10, IGNORE_INDEX]


def test_attention_mask_by_hand():
    real = torch.tensor([[True, True, True, False]])
    spans = torch.tensor([[-1, 0, 0, -1]])
    expected = torch.tensor(
        [[1, 0, 0, 0],
         [1, 1, 1, 0],
         [1, 1, 1, 0],
         [0, 0, 0, 1]], dtype=torch.bool)  # fmt: skip
    assert torch.equal(attention_mask(real, spans)[0], expected)


def test_to_moves_tensors_and_keeps_spans():
    p = pack([[text_segment([7, 8])]])
    q = p.to("cpu")
    assert q.spans == p.spans and q.attn_mask.device.type == "cpu"
    assert q.rope_positions("mrope").shape == (3, 1, 2)
    with pytest.raises(ValueError, match="1d"):
        p.rope_positions("2d")


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="list of documents"):
        pack([text_segment([1])])
    with pytest.raises(ValueError, match="grid"):
        image_segment(torch.randn(6, IMAGE_DIM), (2, 2))
    with pytest.raises(ValueError, match="square"):
        image_segment(torch.randn(6, IMAGE_DIM))
    with pytest.raises(ValueError, match="batched"):
        image_segment(torch.randn(1, 4, IMAGE_DIM))
    with pytest.raises(ValueError, match="wide"):
        pack([[image_segment(torch.randn(4, 5))], [image_segment(torch.randn(4, 6))]])
    with pytest.raises(ValueError, match="bidirectional"):
        pack([[text_segment([1])]], bidirectional={Modality.TEXT})


def test_mrope_grid_of_one_span():
    assert mrope_grid(3, Modality.IMAGE, 4, (2, 2)).tolist() == [
        [3, 3, 3, 3],
        [3, 3, 4, 4],
        [3, 4, 3, 4],
    ]
    assert mrope_grid(3, Modality.AUDIO, 2).tolist() == [[3, 4]] * 3


def test_next_token_targets_by_hand():
    modality = torch.tensor([[0, 1, 1, 0, PAD]])
    text_ids = torch.tensor([[7, 0, 0, 8, 0]])
    image = torch.arange(5.0).view(1, 5, 1)
    out = next_token_targets(modality, text_ids, image, torch.zeros(1, 5, 0))
    assert out["target_modality"].tolist() == [[1, 1, 0, PAD, PAD]]
    assert out["text_targets"].tolist() == [
        [IGNORE_INDEX, IGNORE_INDEX, 8, IGNORE_INDEX, IGNORE_INDEX]
    ]
    assert out["image_targets"].flatten().tolist() == [1.0, 2.0, 0.0, 0.0, 0.0]


def test_pad_to_gives_a_fixed_length():
    p = pack([[text_segment([7, 8])]], pad_to=6)
    assert p.seq_len == 6 and p.lengths.tolist() == [2]
    assert p.describe() == "TT...."


def test_left_padding_ends_documents_together():
    image = image_segment(torch.randn(4, IMAGE_DIM))
    docs = [[text_segment([7, 8, 9])], [text_segment([7]), image]]
    p = pack(docs, pad_side="left")
    assert [p.describe(0), p.describe(1)] == ["..TTT", "TIIII"]
    assert p.positions[0].tolist() == [0, 0, 0, 1, 2]  # real tokens count from 0
    assert p.mrope_positions[:, 0, 2:].tolist() == [[0, 1, 2]] * 3
    assert not p.attn_mask[0, 2:, :2].any()  # nobody looks at the left padding
    assert unpack(p) == docs
    with pytest.raises(ValueError, match="pad_side"):
        pack(docs, pad_side="middle")


def test_select_rows_keeps_each_document_whole():
    docs = [
        [text_segment([7])],
        [image_segment(torch.randn(4, IMAGE_DIM)), text_segment([8])],
        [audio_segment(torch.randn(2, AUDIO_DIM))],
    ]
    p = pack(docs, image_dim=IMAGE_DIM, audio_dim=AUDIO_DIM)
    q = p.select([2, 1])
    assert unpack(q) == [docs[2], docs[1]]
    assert torch.equal(q.mrope_positions, p.mrope_positions[:, [2, 1]])
    assert torch.equal(q.attn_mask, p.attn_mask[[2, 1]])
