"""Predict, then measure: the learner writes a guess down before a lesson's headline run.

Two calls around the run::

    prediction = predict("06-heads", "Which head writes better pictures on full prompts?",
                         choices=["linear heads", "flow heads", "about the same"])
    prediction                      # the cell's value: a small control to set now
    ...                             # the headline run
    reveal(prediction, measured="flow heads")

or, for a number, ``predict("04-steps", "Validity of the flow head at 8 steps?",
numeric=(0.0, 1.0))`` and ``reveal(prediction, measured=0.62)``.

In JupyterLab and Colab the prediction shows as a core ipywidgets control (radio buttons
or a slider; the same on ipywidgets 7.7 and 8) that the learner sets before running the
next cell. Where widgets do not render (a static page, a notebook viewer, a terminal) it
shows as text saying how to record a guess in code: ``prediction.set("flow heads")``. A
prediction that nobody set is "no prediction", so the lesson runs headless (nbval,
scripts) without waiting: nothing here blocks. :func:`reveal` reads the guess once, locks
the control, and says the guess, the measured value, the gap (a number) or right and wrong
(a choice), and what the guess implied.

Widget state never reaches a committed or rendered notebook: the hygiene tool and the
site drop the notebook's ``widgets`` metadata and every bare widget view, keeping the text
or HTML this object carries beside its view.
"""

from __future__ import annotations

import html
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

# The widget-view MIME type (the same in ipywidgets 7.7 and 8.x).
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_VIEW_VERSION = {"version_major": 2, "version_minor": 0}

# The radio button that stands for "I have not guessed".
NO_CHOICE = "(no prediction yet)"


def _number(value: Any, what: str) -> float:
    """``value`` as a float: a Python, NumPy or one-element tensor number."""
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        size = value.numel() if isinstance(value, torch.Tensor) else value.size
        if size != 1:
            raise ValueError(f"{what} should be one number; got shape {tuple(value.shape)}.")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} should be a number; got {type(value).__name__}.")
    return float(value)


@dataclass(eq=False, repr=False)
class Prediction:
    """One guess, written down before a measurement (make it a cell's value to show it).

    Build it with :func:`predict`, which checks the question and its answers: ``choices``
    for a choice, else a number, in ``range`` when that is given. ``value`` is the guess
    (``None``: no prediction); :meth:`set` records one in code, which is also how a test or
    a terminal sets it.
    """

    key: str
    question: str
    choices: list[str] | None
    range: tuple[float, float] | None
    unit: str
    implies: dict[str, str]
    value: str | float | None = field(default=None, init=False)
    locked: bool = field(default=False, init=False)
    _widget: Any = field(default=None, init=False)  # the control, built on first display
    _box: Any = field(default=None, init=False)  # the question above the control: what shows
    _syncing: bool = field(default=False, init=False)  # set() moving it is not the learner

    @property
    def is_numeric(self) -> bool:
        return self.choices is None

    def set(self, value: str | float) -> Prediction:
        """Record the guess ``value`` (one of the choices, or a number); returns ``self``."""
        if self.locked:
            raise RuntimeError("this prediction was revealed already; a guess comes first.")
        if self.is_numeric:
            value = _number(value, "a numeric prediction")
            if self.range is not None and not self.range[0] <= value <= self.range[1]:
                raise ValueError(f"the guess should lie in {self.range}; got {value}.")
        elif value not in self.choices:
            raise ValueError(f"the guess should be one of {self.choices}; got {value!r}.")
        self.value = value
        if self._widget is not None:
            self._syncing = True
            try:
                self._widget.value = value
            finally:
                self._syncing = False
        return self

    # --- the control ---------------------------------------------------------------------

    def widget(self) -> Any:
        """The ipywidgets control (built once), or ``None`` where ipywidgets is missing."""
        if self._widget is not None:
            return self._widget
        try:
            import ipywidgets as w
        except ImportError:
            return None
        style = {"description_width": "initial"}
        layout = w.Layout(width="auto")
        if not self.is_numeric:
            control = w.RadioButtons(
                options=[NO_CHOICE, *self.choices],
                value=NO_CHOICE if self.value is None else self.value,
                layout=layout,
                style=style,
            )
        elif self.range is not None:
            low, high = self.range
            start = (low + high) / 2 if self.value is None else self.value
            control = w.FloatSlider(
                value=start,
                min=low,
                max=high,
                step=(high - low) / 100,
                description=self.unit or "your guess",
                readout_format=".3g",
                continuous_update=False,
                style=style,
            )
        else:
            control = w.FloatText(
                value=self.value or 0.0, description=self.unit or "your guess", style=style
            )

        def changed(change: dict[str, Any]) -> None:
            # A move of the control is the guess; "no prediction" puts the guess back.
            if self._syncing or self.locked:
                return
            new = change["new"]
            self.value = None if new == NO_CHOICE else new

        control.observe(changed, names="value")
        self._widget = control
        # Core HTML above the control, so the question and the control are one output. A
        # number's control always holds one, so only a move of it counts as a guess.
        moved = " <i>(move the control: where it starts, it is no guess)</i>"
        label = f"<b>Predict first.</b> {html.escape(self.question)}"
        label += moved if self.is_numeric else ""
        self._box = w.VBox([w.HTML(label), control])
        return control

    def _static_text(self) -> str:
        how = (
            f"prediction.set({self.choices[0]!r})"
            if not self.is_numeric
            else f"prediction.set({self.range[0] if self.range else 0.0})"
        )
        if self.is_numeric:
            span = f" (between {self.range[0]:g} and {self.range[1]:g})" if self.range else ""
            unit = f" in {self.unit}" if self.unit else ""
            answer = f"a number{unit}{span}"
        else:
            answer = "one of: " + "; ".join(self.choices)
        now = "no prediction yet" if self.value is None else f"your prediction: {self.value}"
        return (
            f"Predict before you run the next cell - {self.question} Answer with {answer}. "
            f"Where the control does not show, type {how} in a cell. ({now})"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The control's view where widgets run, its text everywhere else."""
        text = self._static_text()
        bundle: dict[str, Any] = {
            "text/plain": text,
            "text/html": f"<p><b>Predict first.</b> {html.escape(text)}</p>",
        }
        if self.widget() is not None and not self.locked:
            bundle[WIDGET_VIEW] = {**_VIEW_VERSION, "model_id": self._box.model_id}
        return bundle

    def __repr__(self) -> str:
        return self._static_text()


def predict(
    key: str,
    question: str,
    choices: Sequence[str] | None = None,
    *,
    numeric: tuple[float, float] | bool = False,
    unit: str = "",
    implies: Mapping[str, str] | None = None,
) -> Prediction:
    """A guess to write down before the headline run: a choice, or a number.

    Args:
        key: names the prediction, ``"<lesson>-<what>"``, e.g. ``"06-heads"``.
        question: what the learner predicts, one sentence ending in ``?``.
        choices: the answers to choose from (usually the arms).
        numeric: ``(low, high)`` for a number in a range (a slider), or ``True`` for any
            number (a text box).
        unit: what the number is measured in.
        implies: for a choice, one sentence per answer saying what guessing it meant (the
            reveal repeats it), e.g. ``{"flow heads": "you expected sampling to help even
            when the prompt fixes every attribute"}``.

    Make the returned :class:`Prediction` the cell's value: it shows a control where
    widgets run and text elsewhere. It never waits: untouched, it is "no prediction".
    """
    if not question.strip():
        raise ValueError("a prediction needs a question.")
    if (choices is None) == (numeric is False):
        raise ValueError("give either choices=[...] or numeric=(low, high) / numeric=True.")
    answers = [str(c) for c in choices] if choices is not None else None
    if answers is not None:
        if len(answers) < 2 or len(set(answers)) != len(answers):
            raise ValueError(f"choices should be two or more distinct answers; got {choices}.")
        if NO_CHOICE in answers:
            raise ValueError(f"{NO_CHOICE!r} is reserved for 'no prediction'.")
    bounds = None
    if numeric is not False and numeric is not True:
        low, high = (_number(v, "numeric's bounds") for v in numeric)
        if not low < high:
            raise ValueError(f"numeric should be (low, high) with low < high; got {numeric}.")
        bounds = (low, high)
    implied = dict(implies or {})
    unknown = set(implied) - set(answers or [])
    if unknown:
        raise ValueError(f"implies names answers that are not choices: {sorted(unknown)}.")
    return Prediction(str(key), question.strip(), answers, bounds, unit, implied)


@dataclass
class Reveal:
    """The guess beside the measurement; shows as Markdown in a notebook, text elsewhere."""

    key: str
    question: str
    guess: str | float | None
    measured: str | float
    unit: str = ""
    right: bool | None = None
    gap: float | None = None
    implied: str = ""

    def markdown(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        shown = f"{self.measured:.3g}{unit}" if isinstance(self.measured, float) else self.measured
        lines = [f"**Prediction, revealed** — {self.question}"]
        if self.guess is None:
            lines.append(
                f"You made no prediction, so there is nothing to compare: the run measured "
                f"**{shown}**. Next time set the control before the run: a guess written down "
                "first is what makes a measurement tell you something."
            )
            return "\n\n".join(lines)
        if self.gap is None:
            verdict = "right" if self.right else "wrong"
            lines.append(f"Your prediction: **{self.guess}**. Measured: **{shown}** - {verdict}.")
        else:
            lines.append(
                f"Your prediction: **{self.guess:.3g}{unit}**. Measured: **{shown}**. "
                f"Gap (measured - predicted): **{self.gap:+.3g}{unit}**."
            )
        if self.implied:
            implied = self.implied.strip()
            lines.append(implied[:1].upper() + implied[1:] + ("" if implied.endswith(".") else "."))
        return "\n\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __str__(self) -> str:
        return self.markdown().replace("**", "")

    __repr__ = __str__


def reveal(prediction: Prediction, measured: Any, note: str = "") -> Reveal:
    """The learner's guess beside what the run measured (make it the cell's value).

    Locks the prediction (a guess comes before the run, not after) and says the gap (a
    number) or right and wrong (a choice), then one sentence of what the guess implied:
    ``note`` when given, else the prediction's ``implies`` sentence for the guess, else a
    sentence made from the gap.
    """
    if not isinstance(prediction, Prediction):
        raise TypeError(f"reveal needs the Prediction predict() returned; got {prediction!r}.")
    if prediction.is_numeric:
        measured = _number(measured, "measured")
    elif measured not in prediction.choices:
        raise ValueError(f"measured should be one of {prediction.choices}; got {measured!r}.")
    prediction.locked = True
    if prediction._widget is not None:
        prediction._widget.disabled = True
    guess = prediction.value
    right = gap = None
    implied = note
    if guess is not None and prediction.is_numeric:
        gap = measured - guess
        if not implied:
            implied = _what_the_gap_says(gap, prediction)
    elif guess is not None:
        right = guess == measured
        if not implied:
            implied = prediction.implies.get(guess, "")
        if not implied:
            implied = (
                f'your guess "{guess}" matched the run'
                if right
                else f'you expected "{guess}"; the run says "{measured}": '
                "ask which assumption behind your guess the run broke"
            )
    return Reveal(
        prediction.key, prediction.question, guess, measured, prediction.unit, right, gap, implied
    )


def _what_the_gap_says(gap: float, prediction: Prediction) -> str:
    """One sentence on a numeric gap, relative to the range when there is one."""
    unit = f" {prediction.unit}" if prediction.unit else ""
    if prediction.range is not None:
        share = abs(gap) / (prediction.range[1] - prediction.range[0])
        if share <= 0.05:
            return "your guess was within 5 % of the range: your picture of this effect holds"
        size = f" ({share:.0%} of the range)"
    elif gap == 0:
        return "your guess was exact"
    else:
        size = ""
    side, expected = ("above", "less") if gap > 0 else ("below", "more")
    return (
        f"the run came out {abs(gap):.3g}{unit} {side} your guess{size}: ask what made you "
        f"expect {expected}"
    )
