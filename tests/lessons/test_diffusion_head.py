"""Lesson 04's race: pools in three token forms, K samples per prompt, Pareto fronts."""

import pytest
import torch

from omni_edu.data import OmniWorld, PromptSpec
from omni_edu.lessons.diffusion_head import race
from omni_edu.modalities import TextTokenizer
from omni_edu.parts import any_to_any as a2a
from omni_edu.profiles import get_profile

CI = get_profile("ci")


class TinyAutoencoder(torch.nn.Module):
    """A stand-in tokenizer: one 3-number latent per 4x4 patch (its mean colour), codes
    by rounding the red channel into 4 bins. Enough to test the plumbing, instantly."""

    vocab_size = 4

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode_latents(self, x):
        patches = x.unfold(2, 4, 4).unfold(3, 4, 4).mean((-1, -2))  # (n, 3, 4, 4)
        return patches.flatten(2).transpose(1, 2)  # (n, 16, 3)

    def decode_latents(self, latents):
        grid = latents.transpose(1, 2).unflatten(2, (4, 4))
        return grid.repeat_interleave(4, 2).repeat_interleave(4, 3).clamp(0, 1)

    def encode_to_indices(self, x):
        return (self.encode_latents(x)[..., 0] * 3.999).long()

    def decode_from_indices(self, ids):
        return self.decode_latents(torch.stack([ids / 3, ids / 3, ids / 3], -1).float())


def test_pareto_front_keeps_only_unbeaten_points():
    points = [(0.1, 0.9), (0.5, 0.5), (0.4, 0.4), (0.9, 0.1), (0.5, 0.6)]
    assert race.pareto_front(points) == [0, 4, 3]  # (0.5, 0.5) and (0.4, 0.4) are beaten
    assert race.pareto_front([(0.3, 0.3)]) == [0]


def test_flow_samplers_turn_one_knob_at_a_time():
    samplers = race.flow_samplers((1, 8, 16), (0.5,), (3.0,))
    default = samplers["8 steps"]
    assert next(iter(samplers)) == "8 steps"  # the default comes first
    for name, options in samplers.items():
        changed = {k for k in options if options[k] != default[k]}
        assert len(changed) <= 1, name
    assert samplers["CFG 3.0"]["guidance"] == 3.0 and samplers["1 steps"]["steps"] == 1


def test_latents_carry_the_same_scenes_through_the_autoencoder():
    world = OmniWorld("train", seed=0, n_objects=1, profile=CI)
    tok = TinyAutoencoder()
    latents = a2a.AnyToAnyData(world, 8, ("text->image",), image_tokenizer=tok, latents=("image",))
    codes = a2a.AnyToAnyData(world, 8, ("text->image",), image_tokenizer=tok)
    assert latents.image_dim == 3 and latents.tokenizers == {} and "image" not in latents.codes
    torch.testing.assert_close(latents.patches, tok.encode_latents(latents.batch.images))
    assert codes.codes["image"].shape == (8, 16)
    back = latents.decode("image", latents.patches)
    torch.testing.assert_close(back, tok.decode_latents(latents.patches))
    model = a2a.build_model(latents, image_head="flow")
    assert model.config.projector.image_dim == 3  # the projector reads latents
    with pytest.raises(ValueError, match="latents names modalities"):
        a2a.AnyToAnyData(world, 8, ("text->image",), latents=("image",))


def test_race_pools_score_prompts_that_leave_something_free():
    pools = race.race_pools(CI, TinyAutoencoder(), n_train=16, n_test=6)
    assert set(pools.train) == {"codes", "latents", "pixels"}
    full = pools.test["pixels"]["full"].fixed(race.DIRECTION)
    opened = pools.test["pixels"]["open"].fixed(race.DIRECTION)
    assert full[pools.indices["full"]].all()
    assert (~opened[pools.indices["open"]].all(dim=1)).all()  # every open prompt frees one
    # every form holds the same scenes and the same prompts
    texts = {f: p["open"].batch.prompts.texts for f, p in pools.test.items()}
    assert texts["codes"] == texts["latents"] == texts["pixels"]


def test_draw_samples_gives_k_different_pictures_per_prompt():
    world = OmniWorld("test", seed=0, n_objects=1, profile=CI)
    data = a2a.AnyToAnyData(world, 4, ("text->image",), prompts=PromptSpec.uniform(0.5))
    model = a2a.build_model(data, image_head="flow", **a2a.FLOW_HEAD)
    samples = a2a.draw_samples(model, data, "text->image", [0, 1], k=3, steps=2)
    assert samples.shape == (2, 3, 3, CI.image_size, CI.image_size)
    assert not torch.allclose(samples[0, 0], samples[0, 1])  # each repeat gets its own noise
    again = a2a.draw_samples(model, data, "text->image", [0, 1], k=3, steps=2)
    torch.testing.assert_close(samples, again)  # seeded
    with pytest.raises(ValueError, match="pictures and sounds"):
        a2a.draw_samples(model, data, "image->text", [0], k=2)


def test_unconditional_prompt_is_the_task_token_alone():
    tok = TextTokenizer()
    for name, d in a2a.DIRECTIONS.items():
        doc = a2a.unconditional_document(name, tok)
        assert len(doc) == 1 and doc[0].data.tolist() == [tok[d.task]] and not doc[0].predict
    # an empty caption gives the same document: training has shown it to the model
    empty = a2a.make_document("text->image", tok, "")
    assert (
        empty[0].data.tolist() == a2a.unconditional_document("audio->image", tok)[0].data.tolist()
    )
