"""Prompts that leave attributes free: their words, pictures and sounds, their rates, and
the data's conditional distribution of what they leave free."""

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import scenes

from omni_edu.data import (
    ATTRIBUTES,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    OmniWorld,
    PromptSpec,
    Scene,
    SceneObject,
    allowed_pairs,
    caption,
    conditional_distribution,
    conditional_distributions,
    parse_caption,
    render_images,
    scenes_to_tensor,
    synthesize_audio,
)
from omni_edu.data.render import BACKGROUND
from omni_edu.modalities import TextTokenizer
from omni_edu.profiles import get_profile

CI = get_profile("ci")
MIXED = PromptSpec(
    p_free={"shape": 0.3, "colour": 0.5, "size": 0.2, "position": 0.6},
    p_empty=0.1,
    p_grey=0.4,
    p_untimed=0.3,
)


def _said(obj, named):
    """What a prompt naming ``named`` (4 bools) of ``obj`` says: a tuple, "" where free."""
    return tuple(getattr(obj, a) if n else "" for a, n in zip(ATTRIBUTES, named, strict=True))


def _parsed(text):
    return sorted(tuple(o[a] or "" for a in ATTRIBUTES) for o in parse_caption(text))


# --- the words ----------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(scenes, st.data(), st.integers(0, 10**6), st.booleans())
def test_a_prompt_names_exactly_the_attributes_it_fixes(scene, data, seed, varied):
    named = [data.draw(st.lists(st.booleans(), min_size=4, max_size=4)) for _ in scene.objects]
    text = caption(scene, random.Random(seed) if varied else None, named)
    expected = sorted(_said(o, n) for o, n in zip(scene.objects, named, strict=True))
    assert _parsed(text) == expected, text


def test_free_shape_words_read_as_an_object_with_nothing_fixed():
    nothing = dict.fromkeys(ATTRIBUTES)
    assert parse_caption("something") == [nothing]
    assert parse_caption("there is a shape") == [nothing]
    assert parse_caption("a thing and something red")[1] == {**nothing, "colour": "red"}
    assert parse_caption("") == []  # an empty prompt describes no object at all
    obj = SceneObject("cross", "cyan", "small", "bottom right")
    assert caption(Scene((obj,)), None, [[False, True, False, True]]) == (
        "a cyan shape at the bottom right"
    )
    assert caption(Scene((obj,)), None, [[False] * 4]) == "a shape"


@pytest.mark.parametrize("style", ["varied", "canonical"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_world_prompts_name_every_fixed_attribute_and_no_free_one(style, seed):
    world = OmniWorld("train", seed=seed, profile=CI, n_objects=(1, 3), caption_style=style)
    batch = world.sample(300, seed=seed, prompts=MIXED)
    fixed = batch.prompts.fixed["text"]
    assert fixed.shape == batch.attributes.shape and fixed.dtype == torch.bool
    assert not fixed[~batch.mask].any()  # absent objects fix nothing
    for i, (text, scene) in enumerate(zip(batch.prompts.texts, batch.scenes, strict=True)):
        rows = fixed[i, : len(scene)].tolist()
        if text == "":
            assert not any(map(any, rows))
            continue
        expected = sorted(_said(o, r) for o, r in zip(scene.objects, rows, strict=True))
        assert _parsed(text) == expected, text
        if all(map(all, rows)):
            assert text == batch.captions[i]  # a fully specified prompt is the caption
    assert not (TextTokenizer().encode_batch(batch.prompts.texts) == TextTokenizer().unk_id).any()


def test_shares_of_free_attributes_and_empty_prompts_match_the_spec():
    batch = OmniWorld("train", seed=0, profile=CI, n_objects=1).sample(4000, seed=0, prompts=MIXED)
    fixed = {m: f[:, 0] for m, f in batch.prompts.fixed.items()}
    empty = torch.tensor([t == "" for t in batch.prompts.texts])
    assert empty.float().mean().item() == pytest.approx(MIXED.p_empty, abs=0.02)
    assert not fixed["text"][empty].any()
    for k, attribute in enumerate(ATTRIBUTES):
        free = (~fixed["text"][~empty, k]).float().mean().item()
        assert free == pytest.approx(MIXED.p_free[attribute], abs=0.03), attribute
    grey = ~fixed["image"][:, 1]
    assert grey.float().mean().item() == pytest.approx(MIXED.p_grey, abs=0.03)
    assert fixed["image"][:, [0, 2, 3]].all()  # a grey picture still fixes the rest
    untimed = ~fixed["audio"][:, 3]
    assert untimed.float().mean().item() == pytest.approx(MIXED.p_untimed, abs=0.03)
    assert fixed["audio"][:, :3].all()


# --- pictures without colour, sounds without timing -----------------------------------


def _one_of_each(n=48):
    pool = [
        SceneObject(s, c, z, p) for s in SHAPES for c in COLOURS for z in SIZES for p in POSITIONS
    ]
    return scenes_to_tensor([Scene((o,)) for o in random.Random(0).sample(pool, n)])


def test_grey_pictures_have_no_colour_and_the_same_object():
    attributes, mask = _one_of_each()
    grey = torch.arange(len(mask)) % 2 == 0

    def draw(flags):
        return render_images(attributes, mask, 16, torch.Generator().manual_seed(3), 0.0, flags)

    coloured, greyed = draw(None), draw(grey)
    assert torch.equal(greyed[~grey], coloured[~grey])
    object_of = lambda images: (images - BACKGROUND).abs().amax(dim=1) > 0
    assert torch.equal(object_of(greyed), object_of(coloured))  # same pixels, same shape
    chroma = lambda images: images.amax(dim=1) - images.amin(dim=1)
    assert chroma(greyed[grey]).max() < 1e-6  # achromatic
    assert chroma(coloured[grey])[object_of(coloured)[grey]].mean() > 0.3


def test_world_prompt_pictures_differ_from_the_scene_only_in_the_objects_cell():
    world = OmniWorld("train", seed=0, profile=CI, n_objects=1)
    batch = world.sample(200, seed=4, prompts=PromptSpec(p_grey=0.5))
    grey = ~batch.prompts.fixed["image"][:, 0, 1]
    images, prompts = batch.images, batch.prompts.images
    assert 0 < grey.sum() < len(batch) and torch.equal(prompts[~grey], images[~grey])
    changed = ((prompts - images).abs().amax(dim=1) > 0).reshape(-1, 2, 8, 2, 8).any(dim=(2, 4))
    cell = torch.nn.functional.one_hot(batch.attributes[:, 0, 3], 4).reshape(-1, 2, 2).bool()
    assert torch.equal(changed[grey], cell[grey])  # the object recoloured, nothing else
    assert prompts.shape == images.shape and 0 <= prompts.min() and prompts.max() <= 1


def _slot_energy(waveforms):
    return waveforms[:, : 4 * (waveforms.shape[1] // 4)].reshape(len(waveforms), 4, -1).square()


def test_untimed_sounds_fill_every_time_slot_and_keep_their_pitch():
    attributes, mask = _one_of_each()
    untimed = torch.arange(len(mask)) % 2 == 0

    def sound(flags):
        return synthesize_audio(
            attributes, mask, 8000, 0.5, torch.Generator().manual_seed(3), flags
        )

    timed, held = sound(None), sound(untimed)
    assert torch.equal(held[~untimed], timed[~untimed])
    per_slot = _slot_energy(held[untimed]).mean(dim=2)
    assert (per_slot.amin(dim=1) > 0.5 * per_slot.amax(dim=1)).all()  # energy in every slot
    one_slot = _slot_energy(timed[untimed]).mean(dim=2)
    assert (one_slot.amin(dim=1) < 1e-6).all()  # the timed sound used only its own slot
    spectrum = lambda w: torch.fft.rfft(w * torch.hann_window(w.shape[1])).abs().argmax(dim=1)
    assert (spectrum(held[untimed]) - spectrum(timed[untimed])).abs().max() <= 2  # same pitch


def test_world_prompt_sounds_are_model_ready():
    world = OmniWorld("train", seed=0, profile=CI, n_objects=1)
    batch = world.sample(100, seed=0, prompts=PromptSpec(p_untimed=0.5))
    untimed = ~batch.prompts.fixed["audio"][:, 0, 3]
    prompts = batch.prompts
    assert prompts.mels.shape == batch.mels.shape and prompts.waveforms.abs().max() <= 1
    assert torch.equal(prompts.mels[~untimed], batch.mels[~untimed])
    loud = prompts.mels[untimed].amax(dim=2)  # (n, frames): loudest band per frame
    frames = loud.shape[1]
    for slot in range(4):  # the middle of each time slot is loud, not silence (-1)
        middle = loud[:, frames * slot // 4 + frames // 8]
        assert (middle > -0.5).all()


# --- the API ----------------------------------------------------------------------------


def test_default_prompts_are_the_scenes_own_and_fix_everything():
    world = OmniWorld("train", seed=0, profile=CI, n_objects=(1, 3))
    batch = world.sample(64, seed=1, prompts=PromptSpec())
    assert PromptSpec().fully_specified and not MIXED.fully_specified
    assert batch.prompts.texts == batch.captions
    assert torch.equal(batch.prompts.images, batch.images)
    assert torch.equal(batch.prompts.mels, batch.mels)
    for fixed in batch.prompts.fixed.values():
        assert torch.equal(fixed, batch.mask[..., None].expand(-1, -1, 4))
    assert world.sample(4, seed=1).prompts is None  # only when asked for


def test_prompts_are_deterministic_and_leave_the_batch_unchanged():
    world = OmniWorld("train", seed=0, profile=CI, n_objects=(1, 2))
    a, b = (world.sample(50, seed=5, prompts=MIXED) for _ in range(2))
    assert a.prompts.texts == b.prompts.texts
    for m in ("text", "image", "audio"):
        assert torch.equal(a.prompts.fixed[m], b.prompts.fixed[m])
    assert torch.equal(a.prompts.images, b.prompts.images)
    assert torch.equal(a.prompts.mels, b.prompts.mels)
    plain = world.sample(50, seed=5)
    assert torch.equal(plain.images, a.images) and plain.captions == a.captions
    other = world.sample(50, seed=6, prompts=MIXED)
    assert other.prompts.texts != a.prompts.texts


def test_indexing_a_batch_keeps_its_prompts():
    batch = OmniWorld("train", seed=0, profile=CI, n_objects=1).sample(20, prompts=MIXED)
    pick = torch.tensor([7, 2])
    sub = batch[pick]
    assert sub.prompts.texts == [batch.prompts.texts[7], batch.prompts.texts[2]]
    assert torch.equal(sub.prompts.images, batch.prompts.images[pick])
    assert torch.equal(sub.prompts.fixed["text"], batch.prompts.fixed["text"][pick])
    assert len(batch[3:9].prompts) == 6 and batch[3:9].prompts.texts == batch.prompts.texts[3:9]
    assert batch.to("cpu").prompts.mels.shape == batch.prompts.mels.shape


def test_bad_prompt_specs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"p_free keys should come from .*'hue'"):
        PromptSpec(p_free={"hue": 0.5})
    with pytest.raises(ValueError, match=r"p_free\['colour'\] should be a probability .* 1.5"):
        PromptSpec(p_free={"colour": 1.5})
    with pytest.raises(ValueError, match="p_empty should be a probability"):
        PromptSpec(p_empty=-0.1)
    with pytest.raises(TypeError, match="PromptSpec"):
        OmniWorld(profile=CI).sample(2, prompts={"colour": 0.5})


# --- the data's conditional distribution --------------------------------------------


def test_conditional_distribution_follows_the_splits_pairs():
    uniform5 = torch.tensor([0.2, 0.2, 0.0, 0.2, 0.2, 0.2])  # a train circle is never green
    assert torch.allclose(
        conditional_distribution("train", {"shape": "circle"}, "colour"), uniform5
    )
    held = conditional_distribution("heldout", {"shape": "circle"}, "colour")
    assert held.tolist() == [0, 0, 1, 0, 0, 0]
    red = conditional_distribution("train", {"colour": 0}, "shape")  # no red triangle
    assert torch.allclose(red, torch.tensor([1 / 3, 1 / 3, 0, 1 / 3]))
    assert conditional_distribution("test", {}, "position").tolist() == [0.25] * 4
    assert conditional_distribution("train", {"size": "large"}, "size").tolist() == [0, 1]
    with pytest.raises(ValueError, match="no object of split 'train' fits"):
        conditional_distribution("train", {"shape": "circle", "colour": "green"}, "size")


def test_sample_given_draws_real_samples_from_the_conditional_distribution():
    world = OmniWorld("train", seed=0, profile=CI, n_objects=1)
    prompts = torch.tensor([[0, 1, 0, 2], [3, 4, 1, 0]])
    fixed = torch.tensor([[True, False, False, True], [False, True, True, False]])
    k = 600
    batch = world.sample_given(prompts, fixed, k, seed=0)
    assert len(batch) == 2 * k and batch.images.shape == (2 * k, 3, 16, 16)
    drawn = batch.attributes[:, 0].reshape(2, k, 4)
    for i in range(2):  # the fixed columns keep the prompt's values
        assert (drawn[i][:, fixed[i]] == prompts[i, fixed[i]]).all()
    pairs = {tuple(p) for p in allowed_pairs("train").tolist()}
    assert {tuple(p) for p in drawn[..., :2].reshape(-1, 2).tolist()} <= pairs
    expected = conditional_distributions("train", prompts, fixed)
    for k_attr, attribute in enumerate(ATTRIBUTES):
        counts = torch.stack(
            [torch.bincount(d[:, k_attr], minlength=len(expected[attribute][0])) for d in drawn]
        )
        assert torch.allclose(counts / k, expected[attribute], atol=0.07), attribute
    again = world.sample_given(prompts, fixed, k, seed=0)
    assert torch.equal(again.images, batch.images)
