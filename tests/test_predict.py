"""Predict, then measure: a guess written down before the run, revealed beside the result.

Headless (nbval, scripts) an untouched prediction is "no prediction" and nothing waits; a
guess set in code or through the control is revealed right or wrong (a choice) or with its
gap (a number); the widget's view never becomes the only thing a saved notebook holds.
"""

from __future__ import annotations

import pytest
import torch

from omni_edu.tools.site import prepare_notebook
from omni_edu.viz.predict import NO_CHOICE, WIDGET_VIEW, Prediction, predict, reveal

HEADS = ["linear heads", "flow heads", "about the same"]


def heads() -> Prediction:
    return predict(
        "06-heads",
        "Which head writes better pictures on full prompts?",
        choices=HEADS,
        implies={"flow heads": "you expected sampling to help even when nothing is left open"},
    )


def test_an_untouched_prediction_is_no_prediction_and_never_waits():
    prediction = heads()
    assert prediction.value is None
    bundle = prediction._repr_mimebundle_()
    assert "no prediction yet" in bundle["text/plain"] and "prediction.set(" in bundle["text/plain"]
    shown = reveal(prediction, "flow heads")
    assert shown.guess is None and shown.right is None
    assert "You made no prediction" in str(shown) and "flow heads" in str(shown)


def test_a_choice_revealed_right_and_wrong():
    right = reveal(heads().set("flow heads"), "flow heads")
    assert right.right and "right" in str(right)
    assert "You expected sampling to help" in str(right)  # what the guess implied
    wrong = reveal(heads().set("linear heads"), measured="flow heads")
    assert wrong.right is False and "wrong" in str(wrong) and "linear heads" in str(wrong)
    noted = reveal(heads().set("linear heads"), "flow heads", note="you bet on the mean")
    assert "You bet on the mean." in str(noted)


def test_the_control_sets_the_prediction_and_the_reveal_locks_it():
    prediction = heads()
    control = prediction.widget()
    assert control.value == NO_CHOICE  # the control starts at "no prediction"
    control.value = "flow heads"  # what a learner's click does
    assert prediction.value == "flow heads"
    control.value = NO_CHOICE
    assert prediction.value is None
    prediction.set("linear heads")
    assert control.value == "linear heads"
    reveal(prediction, "flow heads")
    assert control.disabled and prediction.locked
    control.value = "flow heads"  # a guess after the run does not count
    assert prediction.value == "linear heads"
    with pytest.raises(RuntimeError, match="revealed"):
        prediction.set("flow heads")
    assert WIDGET_VIEW not in prediction._repr_mimebundle_()


def test_a_number_revealed_with_its_gap():
    prediction = predict("04-steps", "Validity of the flow head at 8 steps?", numeric=(0.0, 1.0))
    slider = prediction.widget()
    slider.value = 0.4
    shown = reveal(prediction, measured=torch.tensor(0.62))
    assert shown.guess == pytest.approx(0.4) and shown.gap == pytest.approx(0.22)
    assert "Gap (measured - predicted): +0.22" in str(shown) and "22% of the range" in str(shown)
    close = reveal(predict("04", "Validity?", numeric=(0.0, 1.0)).set(0.6), measured=0.62)
    assert "within 5 % of the range" in str(close)
    seconds = predict("00-speed", "Seconds for 1,000 samples?", numeric=True, unit="s").set(2)
    assert "-1.5 s" in str(reveal(seconds, 0.5))


def test_bad_predictions_are_refused():
    with pytest.raises(ValueError, match="either choices"):
        predict("x", "What?")
    with pytest.raises(ValueError, match="one of"):
        heads().set("diffusion heads")
    with pytest.raises(ValueError, match="lie in"):
        predict("x", "How much?", numeric=(0.0, 1.0)).set(2.0)
    with pytest.raises(ValueError, match="one of"):
        reveal(heads(), "diffusion heads")
    with pytest.raises(ValueError, match="not choices"):
        predict("x", "Which?", choices=["a", "b"], implies={"c": "?"})


def test_a_saved_prediction_keeps_its_text_and_drops_the_widget():
    prediction = heads()
    bundle = prediction._repr_mimebundle_()
    assert WIDGET_VIEW in bundle  # JupyterLab and Colab show the control
    output = {"output_type": "execute_result", "data": bundle, "metadata": {}}
    nb = {
        "cells": [{"cell_type": "code", "source": "prediction", "outputs": [output]}],
        "metadata": {"widgets": {"application/vnd.jupyter.widget-state+json": {}}},
    }
    page = prepare_notebook(nb)
    data = page["cells"][0]["outputs"][0]["data"]
    assert WIDGET_VIEW not in data and "Predict first." in data["text/html"]
    assert "widgets" not in page["metadata"]


def test_in_a_kernel_each_cell_shows_one_output_and_the_page_keeps_no_widget(tmp_path):
    """nbclient runs the cells as JupyterLab does; the site's page is made from the run."""
    import nbformat

    from omni_edu.tools import run_lessons, site
    from omni_edu.tools.notebook_io import build_notebook, write_notebook

    cells = [
        "from omni_edu.viz.predict import predict, reveal\n"
        "prediction = predict('00-x', 'Which?', choices=['a', 'b'])\nprediction",
        "reveal(prediction, 'a')",
        "guess = predict('00-y', 'How much?', numeric=(0.0, 1.0)).set(0.25)\nguess",
        "reveal(guess, 0.5)",
    ]
    path = tmp_path / "notebooks" / "00_predict.ipynb"
    write_notebook(build_notebook([("code", c) for c in cells]), path)
    out = tmp_path / "executed.ipynb"
    run = run_lessons.execute_notebook(path, "ci", out_path=out)
    assert run.ok, run.error
    nb = nbformat.read(out, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"][1:]  # after the Colab set-up cell
    assert [len(c.outputs) for c in code] == [1, 1, 1, 1]
    assert WIDGET_VIEW in code[0].outputs[0]["data"]  # the control, where widgets run
    assert "no prediction" in code[1].outputs[0]["data"]["text/plain"]
    assert "+0.25" in code[3].outputs[0]["data"]["text/plain"]
    assert site.notebook_problems(nb, "00_predict") == []
    page = prepare_notebook(nb)
    assert "widgets" not in page["metadata"]
    shown = [o.get("data", {}) for c in page["cells"] for o in c.get("outputs", [])]
    assert shown and not any(WIDGET_VIEW in data for data in shown)
    assert "Predict first." in shown[0]["text/html"]  # the text stands in for the control
