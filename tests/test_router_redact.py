"""Reversible redaction: stable placeholders, exact restoration (also when the
answer streams in arbitrary pieces), and a mapping that never shows its values."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from router import Redaction, detect

TEXT = "Mail bob@example.com or bob@example.com, not eve@example.org; call 312-867-5309."


def _redact(text: str) -> tuple[Redaction, str]:
    redaction = Redaction(avoid=[text])
    return redaction, redaction.apply(text, [(f.start, f.end, f.kind) for f in detect(text)])


def test_same_value_gets_the_same_placeholder_and_kinds_count_separately():
    redaction, out = _redact(TEXT)
    assert out == "Mail [EMAIL_1] or [EMAIL_1], not [EMAIL_2]; call [PHONE_1]."
    assert redaction.placeholders == ("[EMAIL_1]", "[EMAIL_2]", "[PHONE_1]")
    assert redaction.original("[EMAIL_2]") == "eve@example.org"


def test_restore_puts_every_value_back():
    redaction, out = _redact(TEXT)
    assert redaction.restore(out) == TEXT
    assert redaction.restore("Reply to [EMAIL_2] and [PHONE_1]") == "Reply to eve@example.org and 312-867-5309"


def test_placeholders_the_request_did_not_make_are_left_alone():
    redaction, _ = _redact(TEXT)
    assert redaction.restore("[EMAIL_9] and [CARD_1] and [email_1]") == "[EMAIL_9] and [CARD_1] and [email_1]"


def test_a_placeholder_already_in_the_text_is_never_reused():
    text = "Template says [EMAIL_1]; the real one is bob@example.com"
    redaction, out = _redact(text)
    assert out == "Template says [EMAIL_1]; the real one is [EMAIL_2]"
    assert redaction.restore(out) == text


def test_overlapping_spans_merge_into_one_placeholder_named_for_the_longest():
    redaction = Redaction()
    out = redaction.apply("abcdefghij", [(2, 5, "short"), (3, 9, "longer_kind")])
    assert out == "ab[LONGER_KIND_1]j"
    assert redaction.restore(out) == "abcdefghij"


def test_repr_and_copies_never_show_values():
    redaction, _ = _redact(TEXT)
    assert "bob" not in repr(redaction) and "867" not in repr(redaction)
    assert "bob" not in repr(copy.copy(redaction))


def test_streaming_restorer_holds_back_a_partial_placeholder():
    redaction, _ = _redact(TEXT)
    restorer = redaction.restorer()
    assert restorer.feed("Write to [EMA") == "Write to "
    assert restorer.feed("IL_2] now [") == "eve@example.org now "
    assert restorer.feed("sic]") == "[sic]"
    assert restorer.feed(" [PHONE_") == " "
    assert restorer.flush() == "[PHONE_"


def test_streaming_restorer_without_placeholders_passes_text_straight_through():
    restorer = Redaction().restorer()
    assert restorer.feed("a [b") == "a [b"


answers = st.lists(
    st.sampled_from(["[EMAIL_1]", "[EMAIL_2]", "[PHONE_1]", "[EMAIL_", "[", "]", "EMAIL_1]", "x", " ", "ok [x] "]),
    max_size=30,
).map("".join)


@given(answer=answers, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_streamed_restoration_equals_restoring_the_whole_answer(answer, cuts):
    redaction, _ = _redact(TEXT)
    points = sorted({c for c in cuts if c <= len(answer)} | {0, len(answer)})
    restorer = redaction.restorer()
    streamed = "".join(restorer.feed(answer[a:b]) for a, b in zip(points, points[1:])) + restorer.flush()
    assert streamed == redaction.restore(answer)
