"""generate.backends.TextDeltas: streamed deltas add up to the stripped answer, never split a character."""
from generate.backends import TextDeltas


def _decode(chunks: list[bytes]):
    return lambda ids: b"".join(chunks[i] for i in ids).decode("utf-8", "replace")


def test_deltas_join_to_the_stripped_text_and_hold_back_split_characters():
    # token 2 and 3 are the two bytes of "é"; token 0 is leading whitespace
    chunks = [b"  ", b"caf", "é".encode()[:1], "é".encode()[1:], b" au", b" lait"]
    d = TextDeltas(_decode(chunks))
    out = [d.push(list(range(n))) for n in range(1, len(chunks) + 1)]
    assert out == ["", "caf", "", "é", " au", " lait"]
    assert "".join(out) == _decode(chunks)(list(range(len(chunks)))).strip()


def test_whitespace_only_answer_emits_nothing():
    d = TextDeltas(_decode([b" ", b"\n"]))
    assert d.push([0]) == "" and d.push([0, 1]) == ""
