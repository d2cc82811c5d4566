"""ros_pgpt.data.phrases: an object's words from its prompt, and readable answers (no model)."""
import pytest

from ros_pgpt.data.phrases import object_phrase, readable_answer


@pytest.mark.parametrize('prompt, phrase', [
    ('where is the red star?', 'red star'),
    ('the small red star', 'small red star'),
    ('point to every shape', 'shape'),
    ('where are all the red objects?', 'red object'),
    ('Find  all the  Large Circles', 'large circle'),
    ('can you find the leftmost red object?', 'leftmost red object'),
    ('the star left of the blue circle', 'star left of the blue circle'),
    ('segment the boxes', 'box'),
    ('the glass', 'glass'),
    ('where is the red mug?', 'red mug'),
    ('find', 'find'),  # nothing but a request word: keep the words
])
def test_object_phrase(prompt, phrase):
    assert object_phrase(prompt) == phrase


def test_readable_answer():
    assert readable_answer('<obj><obj>', 'red star', 2) == '2 objects: red star'
    assert readable_answer('<obj>', 'red star', 1) == '1 object: red star'
    assert readable_answer('none', 'red star', 0) == 'none'
    assert readable_answer('', 'red star', 0) == 'none'
    assert readable_answer('small red star<eos>', 'object', 0) == 'small red star', 'text answers keep their words'
