"""The shared race tool: pools in any token form, and what each way of drawing costs."""

from dataclasses import replace

import pytest
from lessons.test_diffusion_head import TinyAutoencoder

from omni_edu.data import OmniWorld
from omni_edu.generation import costs, race
from omni_edu.model.heads.output import PER_TOKEN_SIBLING
from omni_edu.model.omni_lm import OmniLM
from omni_edu.parts import any_to_any as a2a
from omni_edu.profiles import get_profile

CI = get_profile("ci")
WORLD = OmniWorld("train", seed=0, n_objects=1, profile=CI)


@pytest.fixture(scope="module")
def pools():
    pixels = a2a.AnyToAnyData(WORLD, 8, ("text->image",))
    codes = a2a.AnyToAnyData(WORLD, 8, ("text->image",), image_tokenizer=TinyAutoencoder())
    return {"pixels": pixels, "codes": codes}


def model_for(head: str, pool) -> OmniLM:
    """An untrained OmniLM with ``head`` for ``pool`` (a small DiT: one block)."""
    sibling = PER_TOKEN_SIBLING.get(head, head)
    overrides = {**a2a.FLOW_HEAD, **({"head_depth": 1} if head == "dit" else {})}
    config = a2a.model_config(pool, image_head=sibling, **overrides)
    return OmniLM(replace(config, image_head=head)).eval()


@pytest.mark.parametrize(
    "head, form, steps, passes",
    [
        ("linear", "pixels", None, 16),  # one pass per patch: the prompt's, then 15 more
        ("flow", "pixels", 4, 16),
        ("codes", "codes", None, 16),
        ("dit", "pixels", 4, 1),  # the prompt and the placeholders, once
        ("transfusion", "pixels", 4, 5),  # the prompt, then one pass per step
        ("masked_codes", "codes", 4, 5),
    ],
)
def test_decoder_passes_per_picture(pools, head, form, steps, passes):
    pool = pools[form]
    options = {} if steps is None else {"steps": steps}
    cost = costs.sampling_cost(model_for(head, pool), pool, "text->image", [0, 1, 2], 1, **options)
    assert cost.decoder_passes == passes and cost.pictures == 3
    assert cost.flops > 0 and cost.ms > 0
    if head in ("flow", "dit"):
        assert cost.head_passes == (16 * steps if head == "flow" else steps)


def test_training_flops_count_the_heads_work(pools):
    linear = costs.training_flops(
        model_for("linear", pools["pixels"]), pools["pixels"], "text->image", 4
    )
    flow = costs.training_flops(
        model_for("flow", pools["pixels"]), pools["pixels"], "text->image", 4
    )
    assert 0 < linear < flow  # the flow head's MLP runs four noise draws per token


def test_race_pools_can_leave_out_a_form():
    pools = race.race_pools(CI, None, n_train=8, n_test=4, forms=("pixels",))
    assert set(pools.train) == {"pixels"}
    with pytest.raises(ValueError, match="autoencoder"):
        race.race_pools(CI, None, n_train=8, n_test=4, forms=("codes",))
