import pytest
import torch
from torch import nn

from omni_edu.data import OmniWorld, Question, Scene, SceneObject
from omni_edu.modalities import Modality, TextTokenizer
from omni_edu.parts import any_to_any as a2a
from omni_edu.parts.judges import Judges
from omni_edu.profiles import get_profile

TOK = TextTokenizer()
CAPTION = "a small red circle at the top left"
IMAGE = torch.rand(4, 48)
AUDIO = torch.rand(3, 64)
ITEMS = {"text": CAPTION, "image": IMAGE, "audio": AUDIO}


@pytest.fixture(scope="module")
def data():
    world = OmniWorld("train", seed=0, profile=get_profile("ci"), caption_style="canonical")
    return a2a.AnyToAnyData(world, 64)


@pytest.mark.parametrize("name", list(a2a.DIRECTIONS))
def test_documents_read_the_prompt_and_train_the_output(name):
    d = a2a.DIRECTIONS[name]
    doc = a2a.make_document(name, TOK, ITEMS[d.source], ITEMS[d.target])
    first = doc[0]
    assert first.modality == Modality.TEXT and not first.predict
    assert int(first.data[0]) == TOK[d.task]  # the task token comes first
    if d.source == "text":
        assert first.data[1:].tolist() == TOK.encode(CAPTION)
        assert len(doc) == 2
    else:
        assert len(first) == 1 and len(doc) == 3
        assert doc[1].modality == Modality[d.source.upper()] and not doc[1].predict
    output = doc[-1]
    assert output.predict and output.modality == Modality[d.target.upper()]
    # The prompt alone is the document without its output.
    assert a2a.make_document(name, TOK, ITEMS[d.source]) == doc[:-1]


def test_every_direction_has_its_own_prompt():
    # Task token and input modality together pick the direction: no two directions share both.
    keys = {(d.task, d.source) for d in a2a.DIRECTIONS.values()}
    assert len(keys) == len(a2a.DIRECTIONS) == 6


def test_packed_layout_of_a_draw_prompt(data):
    packed = data.pack([data.document("text->image", 0)])
    # <bos> <draw> 8 words <boi> 16 patches <eoi> <eos>
    assert packed.describe(0) == "T" * 10 + "T" + "I" * 16 + "TT"
    assert (packed.target_modality[0] == Modality.IMAGE).sum() == 16
    # <boi> (deciding to draw), <eoi> and <eos> are trained; the prompt's words are not.
    assert (packed.target_modality[0] == Modality.TEXT).sum() == 3


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="direction should be one of"):
        a2a.make_document("image->smell", TOK, IMAGE)
    with pytest.raises(ValueError, match="reads a caption"):
        a2a.make_document("text->image", TOK, IMAGE)


def test_batches_follow_the_mix(data):
    batch = data.batches({"text->image": 1.0, "image->text": 0.0}, 16)(0)
    assert (batch.modality == Modality.AUDIO).sum() == 0
    assert ((batch.target_modality == Modality.IMAGE).sum(dim=1) == 16).all()
    again = data.batches({"text->image": 1.0}, 16)(0)
    assert torch.equal(batch.image, again.image)  # deterministic per step


def test_short_training_lowers_every_direction_loss(data):
    model = a2a.build_model(data, seed=0)
    directions = list(a2a.DIRECTIONS)
    before = a2a.task_losses(model, data, directions, n=16)
    a2a.train_stage(model, data, dict.fromkeys(directions, 1.0), 30, batch_size=16, progress=False)
    after = a2a.task_losses(model, data, directions, n=16)
    for name in directions:
        assert after[name] < 0.8 * before[name], (name, before[name], after[name])


def test_caption_scoring_on_hand_cases(data):
    scene = data.batch.scenes[0]
    right = data.batch.captions[0]
    obj = scene.objects[0]
    wrong_colour = right.replace(obj.colour, "purple" if obj.colour != "purple" else "red")
    gen = a2a.Generations("image->text", [right, wrong_colour, ""], [0, 0, 0])
    assert a2a.score_generations(gen, data, None) == pytest.approx((1 + 0.75 + 0) / 3)


class FixedJudge(nn.Module):
    """A judge that always reads the same attributes."""

    def __init__(self, attributes):
        super().__init__()
        self.attributes = torch.tensor(attributes)

    def predict(self, x):
        return self.attributes.expand(len(x), 4)


def test_media_scoring_counts_attributes_read_back(data):
    truth = data.batch.attributes[0, 0].tolist()  # (shape, colour, size, position)
    half = [truth[0], truth[1], 1 - truth[2], (truth[3] + 1) % 4]
    judges = Judges(image=FixedJudge(half), audio=FixedJudge(truth))
    images = a2a.Generations("text->image", torch.zeros(2, 3, 16, 16), [0, 0])
    sounds = a2a.Generations("image->audio", torch.zeros(2, 32, 32), [0, 0])
    assert a2a.score_generations(images, data, judges) == pytest.approx(0.5)
    assert a2a.score_generations(sounds, data, judges) == pytest.approx(1.0)


def test_chance_levels():
    from omni_edu.parts.judges import chance_level

    assert chance_level() == pytest.approx((1 / 4 + 1 / 6 + 1 / 2 + 1 / 4) / 4)


def test_the_blind_answer_baseline_reads_only_the_question():
    def q(text, answer, ability="count"):
        return Question(text, answer, (answer, "other"), ability, "image")

    train = [q("how many circles?", "one")] * 9 + [q("how many circles?", "two")]
    train += [q("what colour is the square?", "red", "attribute")] * 2
    train += [q("what colour is the square?", "blue", "attribute")]
    test = [q("how many circles?", "one"), q("how many circles?", "two")]
    test += [q("what colour is the square?", "red", "attribute")]
    test += [q("how many squares?", "one")]  # text never seen: its ability's commonest answer
    assert a2a.answer_blind(train, test) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="training and test questions"):
        a2a.answer_blind([], test)


def test_scene_fixture_is_single_object(data):
    assert all(isinstance(s, Scene) and len(s) == 1 for s in data.batch.scenes)
    assert isinstance(data.batch.scenes[0].objects[0], SceneObject)


def test_curriculum_stages_and_their_data():
    stages = a2a.curriculum(150)
    assert [s.name for s in stages] == ["pretrain", "align", "unified", "instruct"]
    assert set(stages[0].mix) == set(a2a.UNIMODAL)  # each modality alone
    assert all(a2a.DIRECTIONS[t].target == "text" for t in stages[1].mix)  # media -> words
    assert set(stages[2].mix) == set(a2a.DIRECTIONS)
    assert a2a.QUESTION in stages[3].mix and set(a2a.DIRECTIONS) <= set(stages[3].mix)
    assert all(t in a2a.TASKS for s in stages for t in s.mix)


def test_balanced_weights_put_what_the_prompt_explains_at_one(data):
    """Linear heads have closed forms: the best constant leaves the variance, the best
    prediction from the scene leaves the variance within each scene's group."""
    weights = a2a.balanced_loss_weights(data)
    assert weights["text"] == 1.0
    x = data.patches
    key = [tuple(r) for r in data.batch.attributes[:, 0].tolist()]
    groups = {k: torch.stack([x[i] for i in range(len(x)) if key[i] == k]) for k in set(key)}
    within = sum(len(g) * g.var(0, unbiased=False).mean() for g in groups.values()) / len(x)
    explained = x.reshape(-1, data.image_dim).var(0, unbiased=False).mean() - within
    assert weights["image"] * explained.item() == pytest.approx(1.0, rel=0.02)
    blind = a2a.balanced_loss_weights(data, rule="blind")["image"]
    assert blind * x.reshape(-1, data.image_dim).var(0).mean().item() == pytest.approx(1, rel=0.02)
    with pytest.raises(ValueError, match="rule"):
        a2a.balanced_loss_weights(data, rule="equal")


def test_flow_losses_are_measured_not_assumed(data):
    """A flow head that cannot see the prompt still reads the token from x_t: its loss is
    far below the constant-velocity formula the course used to divide by (variance of the
    scaled data + 1), and a head told the scene does better still."""
    config = a2a.model_config(data, None, None, "flow", "flow").head_config("image")
    losses = a2a.prompt_losses(data, "image", "flow", config, steps=150)
    scaled = (data.patches - config.shift) / config.scale
    formula = scaled.reshape(-1, data.image_dim).var(0).mean().item() + 1.0
    assert losses["told"] < losses["blind"] < 0.9 * formula


def test_heads_work_on_standardised_tokens(data):
    """The regression and flow heads learn on (x - mean) / std of the pool's tokens."""
    config = a2a.model_config(data, None, None, "flow", "flow")
    for name, tokens in (("image", data.patches), ("audio", data.audio)):
        shift, scale = getattr(config, f"{name}_scale")
        assert shift == pytest.approx(tokens.mean().item(), abs=1e-3)
        assert scale == pytest.approx(tokens.std().item(), abs=1e-3)


def test_generation_shapes_and_gallery(data):
    import matplotlib

    matplotlib.use("Agg")
    model = a2a.build_model(data, seed=0)
    gens = {name: a2a.generate(model, data, name, [0, 1]) for name in a2a.DIRECTIONS}
    assert gens["text->image"].outputs.shape == (2, 3, 16, 16)
    assert gens["image->audio"].outputs.shape == data.batch.mels[:2].shape
    assert all(isinstance(t, str) for t in gens["audio->text"].outputs)
    fig = a2a.gallery_figure({"linear": gens, "again": gens}, data, n=2)
    assert len(fig.axes) == 6 * 2 * 3  # per example: the input and both models' outputs


class GridTokenizer(nn.Module):
    """A stand-in for lesson 03's tokenizer: one code per patch, its mean brightness in 8
    steps; decoding paints each patch flat grey. Enough to exercise the discrete path."""

    vocab_size = 8

    def __init__(self, patch=4, size=16):
        super().__init__()
        self.patch, self.size = patch, size
        self.dummy = nn.Parameter(torch.zeros(()))

    def encode_to_indices(self, images):
        from omni_edu.modalities import patchify

        return (patchify(images, self.patch).mean(-1) * 7.999).long()

    def decode_from_indices(self, ids):
        from omni_edu.modalities import unpatchify

        grey = (ids.float() / 7).unsqueeze(-1).expand(*ids.shape, 3 * self.patch**2)
        return unpatchify(grey, self.patch, self.size, self.size)


@pytest.fixture(scope="module")
def coded():
    world = OmniWorld("train", seed=0, profile=get_profile("ci"), caption_style="canonical")
    return a2a.AnyToAnyData(world, 32, image_tokenizer=GridTokenizer())


def test_pictures_as_codes_are_packed_trained_and_decoded(coded):
    assert coded.codes["image"].shape == (32, 16) and coded.vocab_size("image") == 8
    draw = coded.pool.select([coded.tasks.index("text->image") * len(coded)])
    assert (draw.code_targets[0] >= 0).sum() == 16 and (draw.image_targets == 0).all()
    with pytest.raises(ValueError, match="image_tokenizer exactly when"):
        a2a.build_model(coded, image_head="flow")
    model = a2a.build_model(coded, image_head="codes")
    before = a2a.task_losses(model, coded, ["text->image"], n=16)["text->image"]
    a2a.train_stage(model, coded, {"text->image": 1.0}, 30, batch_size=16, progress=False)
    after = a2a.task_losses(model, coded, ["text->image"], n=16)["text->image"]
    assert after < 0.8 * before
    pictures = a2a.generate(model, coded, "text->image", [0, 1]).outputs
    assert pictures.shape == (2, 3, 16, 16)
    # decoded from codes: every patch is one flat grey
    assert torch.allclose(pictures[:, 0, :4, :4], pictures[:, 1, :4, :4])


def test_capstone_is_trained_once_and_loaded_after(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_CACHE_DIR", str(tmp_path))
    first = a2a.capstone("gpu-dry", verbose=False)  # gpu shapes, a few steps
    assert first.status == "trained" and set(first.extra["losses"]) == {"unified", "instruct"}
    recipe = a2a.capstone_recipe("gpu-dry")
    assert first.model.config.image_head == recipe.image_head == "flow"
    second = a2a.capstone("gpu-dry", verbose=False)
    assert second.status == "loaded"
    trained, loaded = first.model.state_dict(), second.model.state_dict()
    assert trained.keys() == loaded.keys()
    assert all(torch.equal(trained[k].cpu(), loaded[k]) for k in trained)
    # the loss weights it trained with are measured, kept beside it and restored on load
    weights = first.extra["loss_weights"]
    assert set(weights) == {"text", "image", "audio"} and weights["image"] > 0
    assert second.model.config.loss_weights == weights == first.model.config.loss_weights
    assert second.model.image_head.config.time_shift == a2a.FLOW_HEAD["flow_time_shift"]
    _, test = a2a.capstone_data(recipe, "gpu-dry")
    out = a2a.generate(second.model, test, "text->image", [0], steps=2)
    assert out.outputs.shape == (1, 3, 32, 32)
