from omni_edu import grading
from omni_edu.any_to_any import get_direction, make_document
from omni_edu.lessons.any_to_any.checks import check_make_document
from omni_edu.model.interleave import audio_segment, image_segment, text_segment


def stub(direction, tokenizer, source, target=None):
    raise NotImplementedError(grading.STUB_MESSAGE)  # as make_exercises writes it


def _media(modality, data, predict):
    return (image_segment if modality == "image" else audio_segment)(data, predict=predict)


def trains_the_prompt(direction, tokenizer, source, target=None):
    # Plausible mistake: every segment is trained, so the model also learns to write prompts.
    return [
        grading_copy(s, predict=True) for s in make_document(direction, tokenizer, source, target)
    ]


def grading_copy(segment, predict):
    return type(segment)(segment.modality, segment.data, segment.grid, predict)


def task_after_input(direction, tokenizer, source, target=None):
    # Plausible mistake: the input first, then the task token.
    d = get_direction(direction)
    if d.source == "text":
        doc = [text_segment([*tokenizer.encode(source), tokenizer[d.task]], predict=False)]
    else:
        doc = [_media(d.source, source, False), text_segment([tokenizer[d.task]], predict=False)]
    if target is None:
        return doc
    if d.target == "text":
        return [*doc, text_segment(tokenizer.encode(target))]
    return [*doc, _media(d.target, target, True)]


def caption_without_task(direction, tokenizer, source, target=None):
    # Plausible mistake: a text prompt is just the caption; the task token is forgotten.
    doc = make_document(direction, tokenizer, source, target)
    if get_direction(direction).source == "text":
        doc[0] = text_segment(tokenizer.encode(source), predict=False)
    return doc


def test_reference_passes():
    assert check_make_document(make_document).passed


def test_stub_is_not_implemented():
    assert check_make_document(stub).status == grading.NOT_IMPLEMENTED


def test_plausible_mistakes_are_rejected():
    with grading.lenient():
        for wrong in (trains_the_prompt, task_after_input, caption_without_task):
            assert check_make_document(wrong).status == grading.FAILED, wrong.__name__
