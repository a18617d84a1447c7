"""Lesson 08: the serving simulations and a real run, cascade against native, the cost
planner and the lesson's figures."""

import ast
import heapq
import inspect
import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from omni_edu import cost
from omni_edu.data import OmniWorld
from omni_edu.lessons.cost_and_serving import cascade, planner, queues, real_run, stations
from omni_edu.modalities import Modality
from omni_edu.parts import any_to_any as a2a
from omni_edu.profiles import get_profile

# --- queues, stations, a real run, cascade against native ----------------------------------------


def test_one_request_without_contention_takes_the_sum_of_its_stages():
    (request,) = queues.poisson_workload(1, rate=1.0, stage_means=(0.03, 0.07))
    alone = queues.simulate([request], queues.colocated())
    assert alone.jct[0] == pytest.approx(0.10)
    split = queues.simulate([request], queues.disaggregated(transfer_time=0.005))
    assert split.jct[0] == pytest.approx(0.105)  # plus one hand-off
    faster = queues.simulate([request], queues.disaggregated(transfer_time=0.0, speedup=(2.0, 1.0)))
    assert faster.jct[0] == pytest.approx(0.015 + 0.07)


def test_deterministic_for_a_seed():
    def run(seed):
        requests = queues.poisson_workload(200, rate=10, jitter=0.5, seed=seed)
        return queues.simulate(requests, queues.colocated()).jct

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_one_server_matches_the_md1_queue_formula():
    # One FIFO server, Poisson arrivals, fixed service s: the M/D/1 queue, whose mean wait is
    # rho * s / (2 * (1 - rho)) (Pollaczek-Khinchine).
    rate, s = 8.0, 0.1
    rho = rate * s
    md1_wait = rho * s / (2 * (1 - rho))
    one_stage = queues.poisson_workload(20_000, rate, stage_means=(s,), seed=1)
    result = queues.simulate(one_stage, queues.Deployment("one", ("gpu0",)))
    assert result.mean == pytest.approx(s + md1_wait, rel=0.1)
    assert result.utilization["gpu0"] == pytest.approx(rho, rel=0.05)
    # Split s into two equal fixed stages on two servers: the first is the same M/D/1 queue and
    # the second never waits (jobs leave the first at least s/2 apart).
    two_stage = queues.poisson_workload(20_000, rate, stage_means=(s, 0.03), seed=1)
    split = queues.simulate(two_stage, queues.disaggregated(transfer_time=0.01))
    assert split.mean == pytest.approx(s + md1_wait + 0.01 + 0.03, rel=0.1)


def test_colocated_stages_queue_behind_other_requests():
    # Colocated, a finished stage-0 job re-joins the back of the one queue: under load the mean
    # JCT is above the run-to-completion (M/D/1) value, the interference disaggregation removes.
    rate, s = 8.0, 0.1
    rho = rate * s
    requests = queues.poisson_workload(20_000, rate, stage_means=(0.05, 0.05), seed=1)
    result = queues.simulate(requests, queues.colocated())
    assert result.mean > 1.1 * (s + rho * s / (2 * (1 - rho)))
    assert result.utilization["gpu0"] == pytest.approx(rho, rel=0.05)


def test_disaggregated_is_lower_under_load():
    requests = queues.poisson_workload(3000, rate=8, stage_means=(0.05, 0.05), jitter=0.3)
    together = queues.simulate(requests, queues.colocated())
    split = queues.simulate(requests, queues.disaggregated(transfer_time=0.002))
    assert split.mean < 0.6 * together.mean
    assert split.p99 < together.p99
    # both keep up with the arrivals, so throughput is the arrival rate either way
    assert together.throughput == pytest.approx(split.throughput, rel=0.02)


def test_disaggregation_does_not_help_a_lone_request():
    requests = queues.poisson_workload(50, rate=0.01, stage_means=(0.05, 0.05))
    together = queues.simulate(requests, queues.colocated())
    split = queues.simulate(requests, queues.disaggregated(transfer_time=0.01))
    assert split.mean > together.mean  # only the transfer is added


def test_littles_law():
    rate = 6.0
    requests = queues.poisson_workload(5000, rate, stage_means=(0.06, 0.04), jitter=0.5, seed=2)
    for deployment in (queues.colocated(), queues.disaggregated(transfer_time=0.01)):
        result = queues.simulate(requests, deployment)
        assert result.mean_in_system() == pytest.approx(rate * result.mean, rel=0.05)


def test_fifo_keeps_arrival_order_with_equal_work():
    requests = queues.poisson_workload(300, rate=15, stage_means=(0.03, 0.03))
    result = queues.simulate(requests, queues.colocated())
    assert np.all(np.diff(result.finish) > 0)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 40),
    st.floats(0.5, 50),
    st.floats(0.0, 1.0),
    st.floats(0.0, 0.05),
    st.integers(0, 10_000),
)
def test_no_request_finishes_before_its_own_work(n, rate, jitter, transfer, seed):
    requests = queues.poisson_workload(n, rate, (0.02, 0.05), jitter=jitter, seed=seed)
    for deployment in (queues.colocated(), queues.disaggregated(transfer_time=transfer)):
        result = queues.simulate(requests, deployment)
        own_work = np.array([sum(r.service) for r in requests])
        if deployment.name == "disaggregated":
            own_work += transfer
        assert np.all(result.jct >= own_work - 1e-12)
        # a single server never does more than one second of work per second
        for u in result.utilization.values():
            assert u <= 1 + 1e-9


def test_step_processes_exactly_one_event():
    requests = queues.poisson_workload(3, rate=100, stage_means=(0.05, 0.05))
    state = queues.init_state(requests, queues.colocated())
    assert len(state.events) == 3
    queues.step(state)  # the first arrival: the idle server starts stage 0 at once
    assert state.now == pytest.approx(requests[0].arrival)
    assert state.busy["gpu0"]
    upcoming = heapq.nsmallest(len(state.events), state.events)
    done = [e for e in upcoming if e[2] == queues.DONE]
    assert len(done) == 1
    assert done[0][0] == pytest.approx(requests[0].arrival + 0.05)
    assert (done[0][3], done[0][4]) == (0, 0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: queues.poisson_workload(0, 1.0), "n_requests"),
        (lambda: queues.poisson_workload(5, 0.0), "rate"),
        (lambda: queues.Deployment("x", ("a", "b"), transfer_time=-1), "transfer_time"),
        (lambda: queues.Deployment("x", ("a", "b"), speedup=(1.0,)), "one entry per stage"),
        (
            lambda: queues.simulate(queues.poisson_workload(2, 1.0, (0.1,)), queues.colocated()),
            "stage times",
        ),
        (lambda: real_run.real_run("both"), "mode"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@dataclass(frozen=True)
class _Doubler:
    """A served model other than StageModels: two stages that double their input."""

    width: int = 4

    def build(self):
        return (lambda x: 2 * x, lambda x: 2 * x)

    def prompt(self, index=0):
        return torch.full((1, self.width), float(index))  # request i asks with the number i


def test_measure_stages_times_each_stage_of_a_served_model():
    small = real_run.StageModels(d_model=16, ar_tokens=2, image_tokens=8, flow_steps=2)
    seconds = real_run.measure_stages(small, repeats=2)
    assert len(seconds) == 2 and all(0 < s < 5 for s in seconds)
    assert len(real_run.measure_stages(_Doubler(), repeats=1)) == 2


@pytest.mark.slow
def test_real_run_serves_any_served_model_from_a_shared_queue():
    # two colocated workers read one queue (the real M/G/2 run); every request comes back
    result = real_run.real_run(
        "colocated", n_requests=6, rate=50, models=_Doubler(), timeout=120, workers=2
    )
    assert result.jct.shape == (6,) and result.stage_seconds.shape == (6, 2)
    assert result.name == "colocated, 2 workers"
    with pytest.raises(ValueError, match="workers"):
        real_run.real_run("disaggregated", workers=2)


@pytest.mark.slow
def test_real_run_returns_one_positive_jct_per_request():
    small = real_run.StageModels(d_model=32, ar_tokens=4, image_tokens=16, flow_steps=2)
    result = real_run.real_run("disaggregated", n_requests=4, rate=50, models=small, timeout=120)
    assert result.jct.shape == (4,)
    assert np.all(result.jct > 0)
    # each JCT includes the compute the workers measured for it
    assert result.stage_seconds.shape == (4, 2)
    assert np.all(result.jct >= result.stage_seconds.sum(axis=1))


def test_the_transcript_loses_what_only_the_audio_carries():
    from omni_edu.data import OmniWorld

    batch = OmniWorld("train", seed=0, n_objects=1).sample(64, seed=0)
    lost = cascade.handoff_loss(batch)
    assert lost["r2_from_audio"] > 0.9  # the loudness within a size class is in the mels
    assert lost["r2_from_transcript"] < 0.05  # and nowhere in the words
    assert lost["within_class_spread"] > 0.01
    with pytest.raises(ValueError, match="one-object"):
        cascade.handoff_loss(OmniWorld("train", seed=0, n_objects=2).sample(32, seed=0))


def test_stations_reproduce_the_event_simulation():
    # One FIFO server per stage, no batching: the recursion and the event loop agree exactly.
    requests = queues.poisson_workload(2000, 8, (0.05, 0.04), jitter=0.5, seed=3)
    events = queues.simulate(requests, queues.disaggregated(transfer_time=0.003))
    recursion = stations.simulate_stations(requests, stations.pipeline(), transfer_time=0.003)
    np.testing.assert_allclose(recursion.finish, events.finish, rtol=0, atol=1e-12)
    # one server running both stages back to back is the one-stage queue of their sum
    merged = [queues.Job(r.rid, r.arrival, (sum(r.service),)) for r in requests]
    one = queues.simulate(merged, queues.Deployment("one", ("gpu0",)))
    together = stations.simulate_stations(requests, stations.shared_queue(servers=1))
    np.testing.assert_allclose(together.finish, one.finish, atol=1e-12)


def test_shared_queue_runs_a_request_on_the_first_free_device():
    # two devices, three requests at once, 1 s of work each: two start, the third waits 1 s
    requests = [queues.Job(i, 0.0, (0.4, 0.6)) for i in range(3)]
    result = stations.simulate_stations(requests, stations.shared_queue(servers=2))
    np.testing.assert_allclose(result.jct, [1.0, 1.0, 2.0])
    assert result.utilization["station 0"] == pytest.approx(3 / 4)


def test_the_colocated_baseline_decides_the_verdict():
    # Equal hardware, equal stages, 60 % load: colocated with a stage re-queued behind others
    # (two replicas, random routing) loses to disaggregation; run to completion ties; one
    # shared queue over both devices (M/G/2) wins.
    requests = queues.poisson_workload(6000, 12, (0.05, 0.05), jitter=0.5, seed=0)
    requeue = stations.route_randomly(requests, lambda rs: queues.simulate(rs, queues.colocated()))
    rtc = stations.route_randomly(
        requests, lambda rs: stations.simulate_stations(rs, stations.shared_queue(servers=1))
    )
    shared = stations.simulate_stations(requests, stations.shared_queue(servers=2))
    split = stations.simulate_stations(requests, stations.pipeline(), transfer_time=0.002)
    assert split.mean < 0.9 * requeue.mean
    assert split.mean == pytest.approx(rtc.mean, rel=0.1)
    assert shared.mean < 0.85 * split.mean


def test_route_randomly_splits_the_requests_between_replicas():
    requests = queues.poisson_workload(500, 10, (0.03, 0.03), seed=4)

    def serve(rs):
        return queues.simulate(rs, queues.colocated())

    alone = stations.route_randomly(requests, serve, replicas=1)
    np.testing.assert_allclose(alone.finish, serve(requests).finish)
    two = stations.route_randomly(requests, serve, replicas=2, seed=1)
    np.testing.assert_allclose(two.finish, stations.route_randomly(requests, serve, 2, 1).finish)
    assert two.mean < alone.mean  # half the load each
    assert np.all(two.jct >= np.array([sum(r.service) for r in requests]) - 1e-12)
    with pytest.raises(ValueError, match="replicas"):
        stations.route_randomly(requests, serve, replicas=0)


def test_batching_the_decode_stage():
    # Requests arriving together share one decode batch: with a memory-bound cost curve
    # (about 1 for any batch) two of them finish decoding together.
    requests = [queues.Job(i, 0.0, (1.0, 0.1)) for i in range(2)]
    unbatched = stations.simulate_stations(requests, stations.pipeline())
    batched = stations.simulate_stations(requests, stations.pipeline(max_batch=(2, 1)))
    np.testing.assert_allclose(unbatched.jct, [1.1, 2.1])
    np.testing.assert_allclose(batched.jct, [1.1, 1.2])
    # with a compute-bound curve (a batch of b costs b) batching saves nothing
    linear = (lambda b: float(b), lambda b: float(b))
    same = stations.simulate_stations(requests, stations.pipeline(max_batch=(2, 1)), linear)
    np.testing.assert_allclose(same.jct, [2.1, 2.2])
    # under load, batching a stage that costs little more per extra request lowers the JCT
    load = queues.poisson_workload(3000, 15, (0.06, 0.02), jitter=0.3, seed=2)
    curve = (lambda b: 1 + 0.02 * (b - 1), lambda b: float(b))
    plain = stations.simulate_stations(load, stations.pipeline(), curve)
    eight = stations.simulate_stations(load, stations.pipeline(max_batch=(8, 1)), curve)
    assert eight.mean < 0.5 * plain.mean


def test_roofline_batch_cost_tells_memory_from_compute_bound():
    a100 = cost.get_hardware("A100")
    llm, dit = cost.get_model_shape("qwen2-7b"), cost.get_model_shape("dit-xl-2")
    decode = stations.roofline_batch_cost(lambda b: cost.decode_step_cost(llm, 1024, b), a100)
    diffuse = stations.roofline_batch_cost(lambda b: cost.diffusion_step_cost(dit, 256, b), a100)
    assert decode(1) == diffuse(1) == 1.0
    assert 1.0 < decode(8) < 1.1  # eight sequences share each weight read
    assert diffuse(8) == pytest.approx(8.0, rel=0.01)  # nothing to share


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: stations.Station(()), "consecutive"),
        (lambda: stations.Station((0, 2)), "consecutive"),
        (lambda: stations.Station((0,), servers=0), "servers"),
        (lambda: stations.pipeline(2, max_batch=(1,)), "one entry per stage"),
        (
            lambda: stations.simulate_stations(
                queues.poisson_workload(3, 1.0), [stations.Station((0,))]
            ),
            "stations should run stages",
        ),
    ],
)
def test_bad_station_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("module", [queues, stations, real_run, cascade])
def test_serving_imports_no_private_name_from_another_module(module):
    tree = ast.parse(inspect.getsource(module))
    private = [
        f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_") and alias.name != "__future__"
    ]
    assert private == []


def test_mel_log_power_undoes_the_log_mel_scaling():
    from omni_edu.modalities.audio import MelConfig, log_mel

    config = MelConfig.from_profile()
    t = torch.arange(config.sample_rate // 2) / config.sample_rate
    tone = torch.sin(2 * math.pi * 440 * t)
    quiet, loud = cascade.mel_log_power(log_mel(torch.stack([0.25 * tone, 0.5 * tone]), config))
    band = loud.mean(0).argmax()
    # twice the amplitude is four times the power: + log 4 in the tone's band
    assert (loud - quiet)[:, band].mean().item() == pytest.approx(math.log(4), abs=0.01)


def test_voice_assistant_estimate_structure():
    for name in cost.HARDWARE:
        device = cost.get_hardware(name)
        estimate = cascade.voice_assistant_estimate(device, "fp16")
        for stages in estimate.values():
            parts = sum(v for k, v in stages.items() if k != "total")
            assert stages["total"] == pytest.approx(parts)
        # the cascade waits for the whole text answer before speaking; the native model not
        assert estimate["native"]["total"] < estimate["cascade"]["total"]
        assert max(estimate["cascade"], key=lambda k: estimate["cascade"][k] * (k != "total")) == (
            "text model"
        )


def test_native_speech_runs_on_the_small_talker():
    # Qwen2.5-Omni writes its speech tokens with the Talker, not the 7B Thinker.
    a100 = cost.get_hardware("A100")
    native = cascade.voice_assistant_estimate(a100)["native"]
    assert set(native) == {
        "Thinker reads question",
        "Thinker first words",
        "Talker speaks",
        "total",
    }
    heard = 100 + cost.qwen_omni_audio_tokens(5.0) + 10
    speech = cascade.SPEECH_TOKENS_PER_SECOND
    talker = cost.get_model_shape("qwen2.5-omni-talker")
    thinker = cost.get_model_shape("qwen2-7b")
    assert native["Talker speaks"] == pytest.approx(
        cascade.GenerationStage("t", talker, heard, speech).seconds(a100)
    )
    through_thinker = cascade.GenerationStage("t", thinker, heard, speech).seconds(a100)
    assert native["Talker speaks"] < through_thinker / 3


def test_generation_stage_reuses_cached_tokens():
    a100 = cost.get_hardware("A100")
    model = cost.get_model_shape("qwen2-7b")
    cached = cascade.GenerationStage("c", model, 0, 5, cached_tokens=300).seconds(a100)
    steps = sum(cost.decode_step_cost(model, 300 + k).time(a100) for k in range(5))
    assert cached == pytest.approx(steps)  # no prefill for what the cache already holds


def test_generation_stage_is_prefill_plus_decode_steps():
    device = cost.get_hardware("A100")
    model = cost.get_model_shape("qwen2-0.5b")
    decode_only = cascade.GenerationStage("d", model, 0, 5).seconds(device)
    steps = sum(cost.decode_step_cost(model, k).time(device) for k in range(5))
    assert decode_only == pytest.approx(steps)
    longer = cascade.GenerationStage("d", model, 0, 10).seconds(device)
    assert longer > decode_only


# --- the cost planner's caps and widget ----------------------------------------------------------


def test_image_cap_is_reported_exactly_when_it_binds():
    # Below about 994 px a square photo is priced by its size; from there on the 1280-token
    # max_pixels shrinks it, so the image slider stops changing the price.
    assert planner.token_caps(planner.Request(image_side=980)) == []
    for side in (994, 1024, 4096):
        (note,) = planner.token_caps(planner.Request(image_side=side))
        assert "image capped at 1,225 tokens" in note and "994px" in note
        assert planner.plan(planner.Request(image_side=side))["tokens"]["image"] == 1225
    assert planner.token_caps(planner.Request(image_side=0)) == []  # no image, no cap


def test_video_caps_name_the_limit_that_binds():
    (note,) = planner.token_caps(planner.Request(image_side=448, video_seconds=60, video_side=1080))
    assert "shared budget" in note and "120 frames" in note
    later = planner.Request(
        image_side=448, video_seconds=60, video_side=1080, video_rule="qwen2.5-vl"
    )
    (note,) = planner.token_caps(later)
    assert "per-frame cap" in note
    long = planner.token_caps(planner.Request(image_side=448, video_seconds=600))
    assert any("768 frames" in note for note in long)
    square = cost.qwen2vl_video_tokens(1080, 1080, 60, release="qwen2.5-vl")
    assert planner.plan(later)["tokens"]["video"] == square


def test_widget_panel_follows_its_controls_and_shows_caps():
    pytest.importorskip("ipywidgets")
    box = planner.planner_widget(planner.Request(image_side=1024))
    controls, panel = box.children
    assert panel.value.count("Cap reached") == 1 and "1,225 tokens" in panel.value
    output = controls.children[6]
    # the browser snaps a slider to min + k * step: the start value must lie on that grid
    assert output.description == "output tokens"
    assert (output.value - output.min) % output.step == 0
    image = controls.children[0]
    assert image.description == "image side (px)"
    image.value = 448  # below the cap: the note goes away and the price falls
    assert "Cap reached" not in panel.value
    assert "256" in panel.value  # 448x448 -> 256 tokens
    # every control spans the notebook, with a label column wide enough for its label
    for control in controls.children:
        assert control.layout.width == "100%"
        width = int(control.style.description_width.removesuffix("px"))
        assert width >= 7 * len(control.description)  # about 7 px per character
    controls.children[-2].value = "H100"  # device: the panel is rewritten for the new request
    assert controls.children[-2].description == "device"
    assert panel.value == planner.planner_html(planner.Request(image_side=448, device="H100"))
    assert panel.value != planner.planner_html(planner.Request(image_side=448))


def test_static_figure_states_the_caps():
    fig = planner.planner_figure(planner.Request(image_side=2048))
    assert any("Cap reached" in t.get_text() for t in fig.texts)
    plt.close(fig)
    fig = planner.planner_figure(planner.Request(image_side=448))
    assert not fig.texts
    plt.close(fig)


def test_in_a_notebook_the_planner_carries_its_static_figure(monkeypatch):
    """One output: the widget where widgets run, the starting request's figure elsewhere."""
    import base64

    pytest.importorskip("ipywidgets")
    from omni_edu.viz.fallback import WIDGET_VIEW, WithFallback

    monkeypatch.setattr(planner, "in_notebook", lambda: True)
    shown = planner.cost_planner(video_seconds=60)
    assert isinstance(shown, WithFallback)
    bundle = shown._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == shown.widget.model_id
    assert base64.b64decode(bundle["image/png"]).startswith(b"\x89PNG")
    assert bundle["text/plain"].startswith("Cost planner") and "VBox" not in repr(shown)
    video = shown.widget.children[0].children[2]
    assert video.description == "video length (s)" and video.value == 60


# --- the cost planner's numbers, the lesson's figures --------------------------------------------


def test_cost_planner_numbers_and_tips():
    from omni_edu.lessons.cost_and_serving import planner

    request = planner.Request(image_side=1024, video_seconds=60, audio_seconds=10, text_tokens=50)
    result = planner.plan(request)
    tokens = result["tokens"]
    assert tokens["image"] == cost.qwen2vl_image_tokens(1024, 1024)
    assert tokens["audio"] == 250  # 10 s at 25 Hz
    assert tokens["prompt"] == tokens["image"] + tokens["video"] + tokens["audio"] + 50
    assert result["latency_s"] == pytest.approx(result["prefill_s"] + result["decode_s"])
    # the price is proportional to the GPU-hour price
    double = planner.plan(planner.Request(**{**request.__dict__, "price_per_hour": 3.6}))
    assert double["usd_per_request"] == pytest.approx(2 * result["usd_per_request"])
    # every tip saves money on this media-heavy request
    tips = planner.cost_tips(request)
    assert [row["tip"] for row in tips] == [
        "resize images",
        "sample video at 1 fps",
        "cache media embeddings",
        "a cheap model first",
    ]
    assert all(0 < row["saving_%"] < 100 for row in tips)
    with pytest.raises(ValueError, match="Unknown hardware"):
        planner.plan(planner.Request(device="Z80"))


def test_cost_planner_falls_back_to_a_figure_and_builds_its_widget():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from omni_edu.lessons.cost_and_serving import planner

    figure = planner.cost_planner(video_seconds=30)  # not in a notebook: the static figure
    assert isinstance(figure, Figure)
    assert figure.axes[0].get_title() and figure.axes[1].get_xlabel() == "USD per 1,000 requests"
    plt.close(figure)
    box = planner.planner_widget(planner.Request())
    assert len(box.children) == 2


def test_roofline_and_jct_figures():
    import matplotlib.pyplot as plt

    from omni_edu.lessons.cost_and_serving import plots, queues

    a100 = cost.get_hardware("A100")
    model = cost.get_model_shape("qwen2-7b")
    points = {
        "decode": cost.decode_step_cost(model, 1024),
        "flow": cost.diffusion_step_cost(model, 1024),
    }
    fig = plots.roofline_figure(a100, points, dtype="bf16")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "FLOP / byte" in ax.get_xlabel()
    assert len(ax.get_legend().get_texts()) == 2 + len(points)  # roof, ridge, one per point
    plt.close(fig)
    requests = queues.poisson_workload(50, rate=5.0)
    fig = plots.jct_figure([queues.simulate(requests, queues.colocated())])
    assert "ms" in fig.axes[0].get_xlabel()
    plt.close(fig)
    with pytest.raises(ValueError, match="at least one"):
        plots.roofline_figure(a100, {})


# --- the course's model served -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    """An untrained OmniLM with flow heads for pictures and sounds, and its data (ci sizes)."""
    ci = get_profile("ci")
    world = OmniWorld("train", seed=0, n_objects=1, caption_style="canonical", profile=ci)
    data = a2a.AnyToAnyData(world, 6)
    model = a2a.build_model(data, image_head="flow", audio_head="flow").eval()
    return model, data


def test_prefill_is_compute_bound_for_long_prompts_and_matches_the_voice_stages():
    llm = cost.get_model_shape("qwen2-7b")
    a100 = cost.get_hardware("A100")
    assert cost.prefill_cost(llm, 4).bound(a100) == "memory"
    assert cost.prefill_cost(llm, 2048).bound(a100) == "compute"
    # a prefill of b rows reads the weights once: b times the FLOPs, not b times the bytes
    one, eight = cost.prefill_cost(llm, 100), cost.prefill_cost(llm, 100, batch=8)
    assert eight.flops == pytest.approx(8 * one.flops) and eight.bytes_moved < 2 * one.bytes_moved
    stage = cascade.GenerationStage("read", llm, prompt_tokens=300, output_tokens=0)
    assert stage.seconds(a100) == pytest.approx(cost.prefill_cost(llm, 300).time(a100))


@pytest.mark.slow
def test_spoken_captions_serve_the_model_it_was_given(tiny):
    model, data = tiny
    served = real_run.SpokenCaptions.from_model(model, data, data.batch.captions[:2], steps=2)
    speak, vocode = served.build()
    ids = served.prompt(3)  # request 3 speaks caption 3 % 2
    assert data.tokenizer.decode(ids.tolist()) == data.batch.captions[1]
    mels = speak(ids)
    frames = data.batch.mels.shape[1]
    assert mels.shape == (1, frames, data.batch.mels.shape[2]) and mels.abs().max() <= 1
    # the workers' rebuilt model writes what the original writes from the same noise
    torch.manual_seed(0)
    again = speak(ids)
    torch.manual_seed(0)
    (direct,) = model.generate(
        [data.document("text->audio", 1, with_target=False)],
        Modality.AUDIO,
        data.audio.shape[1],
        specials=data.specials,
        steps=2,
    )
    torch.testing.assert_close(again, data.decode("audio", direct[None]).clamp(-1, 1))
    wave = vocode(mels)
    assert wave.shape == (1, frames * data.world.mel_config.hop_length)
    assert torch.isfinite(wave).all()
    with pytest.raises(ValueError, match="caption"):
        real_run.SpokenCaptions.from_model(model, data, [])


@pytest.mark.slow
def test_the_real_run_serves_the_course_model(tiny):
    model, data = tiny
    served = real_run.SpokenCaptions.from_model(model, data, data.batch.captions[:3], steps=1)
    served = real_run.SpokenCaptions(**{**vars(served), "vocoder_iters": 2})
    result = real_run.real_run("colocated", n_requests=3, rate=50, models=served, timeout=180)
    assert result.jct.shape == (3,) and np.all(result.jct >= result.stage_seconds.sum(1))


def test_a_cascade_reads_the_generated_captions(tiny):
    _, data = tiny
    described = a2a.Generations("image->text", ["a big red circle at the center"], [2])
    retold = real_run.with_generated_captions(data, described)
    assert retold.batch.captions[2] == "a big red circle at the center"
    assert retold.batch.captions[:2] == data.batch.captions[:2]
    assert data.batch.captions[2] != retold.batch.captions[2]  # the original is untouched
    assert retold.document("text->audio", 2, with_target=False) != data.document(
        "text->audio", 2, with_target=False
    )
    with pytest.raises(ValueError, match="captions"):
        real_run.with_generated_captions(data, a2a.Generations("text->audio", torch.zeros(1), [0]))


# --- verdicts over seeds and repeats -------------------------------------------------------


def test_real_runs_repeat_on_the_same_workers_one_result_per_arrival_seed():
    small = real_run.StageModels(d_model=32, ar_tokens=4, image_tokens=16, flow_steps=2)
    results = real_run.real_runs(
        "colocated", n_requests=3, rate=50, models=small, seeds=(0, 1, 2), timeout=120, workers=2
    )
    assert len(results) == 3
    for r in results:
        assert r.jct.shape == (3,) and np.all(r.jct > 0) and r.arrival[0] == 0
        assert r.name == "colocated, 2 workers"
        assert np.all(r.jct >= r.stage_seconds.sum(axis=1))
    # each repeat draws its own arrivals: the gaps of seed 0 and seed 1 differ
    assert not np.allclose(np.diff(results[0].arrival), np.diff(results[1].arrival), atol=1e-3)
    with pytest.raises(ValueError, match="seeds"):
        real_run.real_runs("colocated", seeds=())


def test_cuts_over_seeds_puts_an_interval_on_a_comparison_of_two_deployments():
    def workload(seed):
        return queues.poisson_workload(400, 8.0, (0.05, 0.05), jitter=0.5, seed=seed)

    def two(rs):
        return stations.simulate_stations(rs, stations.shared_queue(servers=2))

    def one(rs):
        return queues.simulate(rs, queues.colocated())

    same = stations.cuts_over_seeds(two, two, workload, range(4))
    assert same.cuts == [0.0] * 4 and same.low == same.high == 0.0 and same.keeps_up
    faster = stations.cuts_over_seeds(two, one, workload, range(5))
    assert len(faster.cuts) == 5 and faster.low > 0.2  # a second device cuts the queueing
    assert faster.half_width == pytest.approx((faster.high - faster.low) / 2)

    def overloaded(seed):
        return queues.poisson_workload(400, 30.0, (0.05, 0.05), seed=seed)

    assert not stations.cuts_over_seeds(two, one, overloaded, range(2)).keeps_up
    with pytest.raises(ValueError, match="at least one arrival seed"):
        stations.cuts_over_seeds(two, one, workload, [])


def test_the_handoff_check_has_three_seeds_and_a_seed_level_interval():
    from omni_edu.lessons.cost_and_serving import handoff
    from omni_edu.stats import t_interval

    seeds, base = handoff.handoff_plan("ci")
    assert len(seeds) >= 3 and len(set(seeds)) == len(seeds) and base == handoff.HANDOFF["ci"][1]
    dry_seeds, dry_base = handoff.handoff_plan("gpu-dry")
    assert len(dry_seeds) == 2 and dry_base <= 3  # the gpu dry run trains a few steps
    level = handoff.seed_level([0.01, 0.03, 0.02])
    assert (level.mean, level.low, level.high) == t_interval([0.01, 0.03, 0.02])
    assert level.half_width == pytest.approx((level.high - level.low) / 2)
    assert math.isinf(handoff.seed_level([0.5]).half_width)
