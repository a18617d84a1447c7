"""OmniWorld: scenes, pictures, sounds, captions, questions and splits."""

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import scenes

from omni_edu.data import (
    ATTRIBUTES,
    COLOURS,
    HELDOUT_PAIRS,
    POSITIONS,
    SHAPES,
    SYNONYMS,
    OmniWorld,
    Scene,
    SceneObject,
    ask,
    caption,
    log_mel,
    mel_to_waveform,
    n_values,
    parse_caption,
    render_images,
    row_col,
    scenes_to_tensor,
    score_caption,
    synthesize_audio,
    tensor_to_scenes,
    value_index,
)
from omni_edu.data.language import CAPTION_TEMPLATES, NUMBERS, WHERE_TEMPLATES
from omni_edu.data.sound import LOUDNESS, PITCH_HZ
from omni_edu.modalities import TextTokenizer
from omni_edu.profiles import get_profile

CI = get_profile("ci")
RATE = CI.sample_rate


@pytest.fixture(scope="module")
def single():
    world = OmniWorld("train", seed=0, profile=CI, n_objects=1)
    return world.sample(600, seed=1), world.sample(300, seed=2)


@pytest.fixture(scope="module")
def multi():
    return OmniWorld("train", seed=0, profile=CI, n_objects=(1, 4)).sample(300)


# --- the batch ----------------------------------------------------------------------


def test_batch_shapes_ranges_and_masks(multi):
    n = len(multi)
    assert multi.images.shape == (n, 3, 16, 16)
    assert multi.waveforms.shape == (n, 4000) and multi.mels.shape == (n, 32, 32)
    assert multi.attributes.shape == (n, 4, 4) and multi.attributes.dtype == torch.long
    assert 0 <= multi.images.min() and multi.images.max() <= 1
    assert multi.waveforms.abs().max() <= 1
    assert set(multi.n_objects.tolist()) == {1, 2, 3, 4}
    assert ((multi.attributes == -1).all(-1) == ~multi.mask).all()
    assert len(multi.captions) == len(multi.scenes) == len(multi.questions) == n
    assert tensor_to_scenes(multi.attributes, multi.mask) == multi.scenes
    positions = [[o.position for o in s.objects] for s in multi.scenes]
    assert all(len(set(p)) == len(p) for p in positions)  # one object per cell


def test_batch_indexing_gives_samples_and_sub_batches(multi):
    sample = multi[3]
    assert torch.equal(sample.image, multi.images[3]) and sample.caption == multi.captions[3]
    sub = multi[torch.tensor([5, 1])]
    assert len(sub) == 2 and sub.scenes == [multi.scenes[5], multi.scenes[1]]
    assert torch.equal(multi[2:4].mels, multi.mels[2:4])
    assert multi[torch.tensor(3)].caption == multi[-297].caption == sample.caption
    assert len(multi[multi.n_objects == 1]) == (multi.n_objects == 1).sum()
    assert torch.equal(multi.attribute("colour"), multi.attributes[..., 1])


def test_same_seed_same_data_and_different_seeds_or_splits_differ():
    def make(split="train", seed=0):
        return OmniWorld(split, seed=seed, profile=CI, n_objects=(1, 3)).sample(20)

    a, b = make(), make()
    assert torch.equal(a.images, b.images) and torch.equal(a.waveforms, b.waveforms)
    assert a.captions == b.captions and a.questions == b.questions
    assert not torch.equal(make(seed=1).images, a.images)
    assert not torch.equal(make("test").images, a.images)
    world = OmniWorld("train", seed=0, profile=CI)
    first, second = world.sample(5), world.sample(5)  # the stream moves on
    assert not torch.equal(first.images, second.images)
    assert torch.equal(world.sample(5, seed=3).images, world.sample(5, seed=3).images)


def test_no_two_samples_are_identical(single):
    images = single[0].images.flatten(1)
    mels = single[0].mels.flatten(1)
    off_diagonal = ~torch.eye(len(images), dtype=torch.bool)
    assert (torch.cdist(images, images)[off_diagonal] > 0.1).all()
    assert (torch.cdist(mels, mels)[off_diagonal] > 0.01).all()


def test_objects_stay_inside_their_cell():
    world = OmniWorld("train", seed=0, profile=CI, n_objects=1)
    batch = world.render(
        [Scene((SceneObject(s, "yellow", "large", "top left"),)) for s in SHAPES * 20]
    )
    clean = render_images(batch.attributes, batch.mask, 16, noise=0.0)
    outside = clean.clone()
    outside[:, :, :8, :8] = 0.08
    assert (outside - 0.08).abs().max() < 1e-6


# --- every attribute can be seen and heard ------------------------------------------


def _counterfactual(attribute, old, new, position="top left"):
    """Render one scene twice with the same random draws, changing one attribute."""
    base = {"shape": "square", "colour": "green", "size": "large", "position": position}
    scenes = [Scene((SceneObject(**{**base, attribute: v}),)) for v in (old, new)]
    attributes, mask = scenes_to_tensor(scenes)
    images = torch.cat(
        [
            render_images(
                attributes[i : i + 1], mask[i : i + 1], 16, torch.Generator().manual_seed(7)
            )
            for i in range(2)
        ]
    )
    waves = torch.cat(
        [
            synthesize_audio(
                attributes[i : i + 1], mask[i : i + 1], RATE, 0.5, torch.Generator().manual_seed(7)
            )
            for i in range(2)
        ]
    )
    return images, waves


@pytest.mark.parametrize(
    "attribute,old,new",
    [
        ("shape", "square", "cross"),
        ("colour", "green", "blue"),
        ("size", "large", "small"),
        ("position", "top left", "bottom right"),
    ],
)
def test_changing_one_attribute_changes_picture_and_sound(attribute, old, new):
    images, waves = _counterfactual(attribute, old, new)
    assert (images[0] - images[1]).abs().mean() > 0.01
    mels = log_mel(waves)
    assert (mels[0] - mels[1]).abs().mean() > 0.02


def _peak_hz(wave):
    spectrum = torch.fft.rfft(wave * torch.hann_window(len(wave))).abs()
    return spectrum.argmax().item() * RATE / len(wave)


def test_colour_sets_the_pitch_and_size_the_loudness():
    for colour in COLOURS:
        _, waves = _counterfactual("colour", "green", colour)
        expected = PITCH_HZ[value_index("colour", colour)].item()
        assert _peak_hz(waves[1]) == pytest.approx(expected, rel=0.03)
    _, waves = _counterfactual("size", "large", "small")
    ratio = waves[0].abs().max() / waves[1].abs().max()
    assert ratio == pytest.approx((LOUDNESS[1] / LOUDNESS[0]).item(), rel=0.01)


def test_shape_sets_the_timbre():
    fundamental_share = {}
    for shape in SHAPES:
        _, waves = _counterfactual("shape", "square", shape)
        spectrum = torch.fft.rfft(waves[1]).abs().square()
        f0 = spectrum.argmax()
        fundamental_share[shape] = (spectrum[f0 - 40 : f0 + 41].sum() / spectrum.sum()).item()
    assert fundamental_share["circle"] > 0.97  # a pure sine
    assert fundamental_share["triangle"] > fundamental_share["square"] > fundamental_share["cross"]


def test_position_sets_the_time_slot():
    for position in POSITIONS:
        _, waves = _counterfactual("position", "top left", position)
        slot = waves[1].reshape(4, -1).abs().sum(dim=1).argmax().item()
        assert slot == POSITIONS.index(position)
        row, col = row_col(position)
        assert slot == 2 * row + col


def _nearest_centroid(train_x, train_y, test_x, test_y, classes):
    centroids = torch.stack([train_x[train_y == c].mean(0) for c in range(classes)])
    return (torch.cdist(test_x, centroids).argmin(1) == test_y).float().mean().item()


def _cell(batch):
    """The 8x8 cell holding each single object, brightness only: (n, 64)."""
    row, col = batch.attributes[:, 0, 3] // 2, batch.attributes[:, 0, 3] % 2
    cells = [
        batch.images[i, :, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8]
        for i, (r, c) in enumerate(zip(row.tolist(), col.tolist(), strict=True))
    ]
    return torch.stack(cells).amax(1).flatten(1)


@pytest.mark.parametrize(
    "attribute,modality,feature,at_least",
    [
        ("shape", "image", _cell, 0.45),
        ("colour", "image", lambda b: b.images.flatten(1), 0.6),
        ("size", "image", _cell, 0.85),
        ("position", "image", lambda b: b.images.flatten(1), 0.95),
        ("shape", "audio", lambda b: b.mels.amax(1), 0.75),  # spectrum, wherever it sounds
        ("colour", "audio", lambda b: b.mels.amax(1), 0.85),
        ("size", "audio", lambda b: b.mels.amax((1, 2))[:, None], 0.95),  # peak level
        ("position", "audio", lambda b: b.mels.flatten(1), 0.95),
    ],
)
def test_a_nearest_centroid_classifier_recovers_each_attribute(
    single, attribute, modality, feature, at_least
):
    train, test = single
    column = ATTRIBUTES.index(attribute)
    accuracy = _nearest_centroid(
        feature(train),
        train.attributes[:, 0, column],
        feature(test),
        test.attributes[:, 0, column],
        n_values(attribute),
    )
    assert accuracy >= at_least  # chance is 1 / n_values(attribute)


def test_griffin_lim_inverse_keeps_the_log_mel_close(single):
    mels = single[1].mels[:8]
    rebuilt = log_mel(mel_to_waveform(mels, single[1].mel_config, n_iter=16))
    error = (rebuilt - mels).abs()
    assert error.mean() < 0.15
    assert error[mels > -0.5].mean() < 0.1  # where there is sound
    # a random sound is far from it: the inverse really found this one
    assert (log_mel(torch.randn(8, 4000) * 0.1) - mels).abs().mean() > 0.5


# --- splits -------------------------------------------------------------------------


def _pairs(batch):
    return {(SHAPES[s], COLOURS[c]) for s, c in batch.attributes[batch.mask][:, :2].tolist()}


def test_heldout_combinations_never_appear_in_train_or_test():
    held = set(HELDOUT_PAIRS)
    for split in ("train", "test"):
        world = OmniWorld(split, seed=3, profile=CI, n_objects=(1, 4))
        seen = _pairs(world.sample(300))
        assert not seen & held
        assert len(seen) == len(SHAPES) * len(COLOURS) - len(held)  # everything else does
    heldout = OmniWorld("heldout", seed=3, profile=CI, n_objects=(1, 2)).sample(100)
    assert _pairs(heldout) == held
    # every shape and every colour on its own is still seen in training
    assert {s for s, _ in held} == set(SHAPES) and len({c for _, c in held}) == len(held)


# --- matching a sound to a picture --------------------------------------------------


def test_matching_pairs_are_exact_or_near_misses():
    world = OmniWorld("train", seed=0, profile=CI, n_objects=(1, 3))
    batch = world.matching(200, seed=0)
    assert 60 < batch.match.sum() < 140
    for i in range(len(batch)):
        seen = batch.image_attributes[i][batch.image_mask[i]]
        heard = batch.audio_attributes[i][batch.audio_mask[i]]
        assert len(seen) == len(heard)
        differences = (seen != heard).sum().item()
        assert differences == 0 if batch.match[i] else differences >= 1
        assert batch.questions[i].answer == ("yes" if batch.match[i] else "no")
    held = {(value_index("shape", s), value_index("colour", c)) for s, c in HELDOUT_PAIRS}
    heard_pairs = batch.audio_attributes[batch.audio_mask][:, :2].tolist()
    assert not {tuple(p) for p in heard_pairs} & held


def test_matching_one_object_sound():
    world = OmniWorld("train", seed=0, profile=CI, n_objects=2)
    batch = world.matching(100, seed=0, sound="object")
    assert (batch.audio_mask.sum(1) == 1).all()
    for i in range(len(batch)):
        heard = batch.audio_attributes[i, 0].tolist()
        pictured = batch.image_attributes[i][batch.image_mask[i]].tolist()
        assert (heard in pictured) == bool(batch.match[i])


# --- language -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(scenes, st.integers(0, 10**6))
def test_parser_recovers_every_caption(scene, seed):
    text = caption(scene, random.Random(seed))
    parsed = parse_caption(text)
    expected = [{a: getattr(o, a) for a in ATTRIBUTES} for o in scene.objects]
    key = lambda d: d["position"]
    assert sorted(parsed, key=key) == sorted(expected, key=key)
    assert score_caption(text, scene) == 1.0


def test_parser_knows_every_synonym_and_template():
    for attribute, table in SYNONYMS.items():
        for value, words in table.items():
            for word in words:
                assert parse_caption(f"a {word}")[0][attribute] == value
    obj = SceneObject("cross", "cyan", "small", "bottom right")
    for template in CAPTION_TEMPLATES:
        for where in WHERE_TEMPLATES:
            phrase = f"a tiny teal plus {where.format(v='lower', h='right')}"
            parsed = parse_caption(template.format(objects=phrase))
            assert parsed == [{a: getattr(obj, a) for a in ATTRIBUTES}]


def test_score_caption_counts_right_facts():
    scene = Scene((SceneObject("circle", "red", "small", "top left"),))
    assert score_caption("a small red circle at the top left", scene) == 1.0
    assert score_caption("a small blue circle at the top left", scene) == 0.75
    assert score_caption("", scene) == 0.0
    two = "a small red circle at the top left and a big red box at the bottom left"
    assert score_caption(two, scene) == 0.5  # an invented object costs as much


def _resolve(phrase, scene):
    """Objects of ``scene`` that a referring phrase like "big red object" fits."""
    words = phrase.split()
    if words[:3] == ["object", "at", "the"]:
        return [o for o in scene.objects if o.position == " ".join(words[3:])]
    return [
        o for o in scene.objects if all(w in (o.size, o.colour, o.shape, "object") for w in words)
    ]


def _holds(a, relation, b):
    (ra, ca), (rb, cb) = row_col(a.position), row_col(b.position)
    return {"left of": ca < cb, "right of": ca > cb, "above": ra < rb, "below": ra > rb}[relation]


def _check_answer(question, scene):
    words = question.text.rsplit(" in the ", 1)[0]
    if question.ability == "counting":
        value = words.removeprefix("how many ").removesuffix(" objects are there")
        count = sum(value in (o.shape, o.colour, o.size) for o in scene.objects)
        if words == "how many objects are there":
            count = len(scene)
        return question.answer == NUMBERS[count]
    if question.ability == "attribute":
        if words.startswith("where is the "):
            (obj,) = _resolve(words.removeprefix("where is the "), scene)
            return question.answer == obj.position
        attribute, ref = words.removeprefix("what ").split(" is the ")
        (obj,) = _resolve(ref, scene)
        return question.answer == getattr(obj, attribute)
    for relation in ("left of", "right of", "above", "below"):
        if f" {relation} the " in words:
            left, ref_b = words.split(f" {relation} the ")
            break
    (b,) = _resolve(ref_b, scene)
    if left.startswith("is the "):
        (a,) = _resolve(left.removeprefix("is the "), scene)
        return question.answer == ("yes" if _holds(a, relation, b) else "no")
    (a,) = [o for o in scene.objects if o != b and _holds(o, relation, b)]
    return question.answer == f"{a.colour} {a.shape}"


def test_questions_have_correct_answers_among_distinct_options(multi):
    rng = random.Random(0)
    abilities = set()
    for scene in multi.scenes:
        for _ in range(3):
            question = ask(scene, rng)
            abilities.add(question.ability)
            assert question.modality in ("image", "audio")
            assert len(set(question.options)) == len(question.options) >= 2
            assert question.options[question.answer_index] == question.answer
            assert _check_answer(question, scene), (question, scene)
    assert abilities == {"attribute", "counting", "spatial"}


def test_tokenizer_covers_all_generated_text(multi):
    tokenizer = TextTokenizer()
    texts = multi.captions + [q.text for q in multi.questions]
    texts += [o for q in multi.questions for o in q.options]
    ids = tokenizer.encode_batch(texts)
    assert not (ids == tokenizer.unk_id).any()


def test_canonical_captions_use_one_fixed_wording():
    world = OmniWorld("train", seed=0, profile=CI, n_objects=(1, 2), caption_style="canonical")
    batch = world.sample(20)
    assert batch.captions == [caption(scene) for scene in batch.scenes]
    assert batch.captions[0].startswith("a ") and " at the " in batch.captions[0]


# --- looking and listening ----------------------------------------------------------


def test_show_and_play_a_sample(multi):
    import matplotlib

    matplotlib.use("Agg")
    from omni_edu.viz.omniworld import play, show_batch, show_sample

    sample = multi[0]
    figure = show_sample(sample)
    picture, spectrogram = figure.axes
    assert picture.get_title() == "picture" and spectrogram.get_xlabel() == "time (ms)"
    assert sample.caption[:20] in figure.texts[0].get_text()
    assert len(show_batch(multi, n=3, columns=3).axes) == 3
    wav = play(sample.waveform, sample.sample_rate).data
    assert wav[:4] == b"RIFF" and int.from_bytes(wav[24:28], "little") == RATE


# --- bad input ----------------------------------------------------------------------


def test_bad_arguments_raise_clear_errors():
    world = OmniWorld("train", profile=CI)
    with pytest.raises(ValueError, match=r"split should be one of .*'validation'"):
        OmniWorld("validation")
    with pytest.raises(ValueError, match=r"positive int .* got 0"):
        world.sample(0)
    with pytest.raises(ValueError, match="non-negative int"):
        OmniWorld(seed=-1)
    with pytest.raises(ValueError, match="n_objects"):
        OmniWorld(n_objects=5)
    with pytest.raises(ValueError, match="n_objects"):
        OmniWorld(n_objects=(2, 1))
    with pytest.raises(ValueError, match="caption_style"):
        OmniWorld(caption_style="fancy")
    with pytest.raises(ValueError, match=r"colour should be one of .*'pink'"):
        SceneObject("circle", "pink", "small", "top left")
    with pytest.raises(ValueError, match="share a position"):
        Scene((SceneObject("circle", "red", "small", "top left"),) * 2)
    attributes = torch.tensor([[[0, 0, -1, 0]]])
    with pytest.raises(ValueError, match=r"size indices should be in 0..1; got \[-1\]"):
        render_images(attributes, torch.ones(1, 1, dtype=torch.bool), 16)
    with pytest.raises(ValueError, match="ability"):
        ask(
            Scene((SceneObject("circle", "red", "small", "top left"),)),
            random.Random(0),
            ability="matching",
        )
    with pytest.raises(ValueError, match="p_match"):
        world.matching(4, p_match=2.0)
