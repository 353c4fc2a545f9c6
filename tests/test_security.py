"""Random codes: right length, right alphabet, every character equally likely at every position."""

from __future__ import annotations

from collections import Counter

from invitelink.security import SERIAL_ALPHABET, TOKEN_ALPHABET, random_code


def test_codes_have_the_length_and_alphabet_asked_for() -> None:
    for alphabet in (TOKEN_ALPHABET, SERIAL_ALPHABET, "AB"):
        for length in (1, 8, 20, 40):
            code = random_code(length, alphabet)
            assert len(code) == length
            assert set(code) <= set(alphabet)


def test_every_character_is_equally_likely_at_the_first_and_last_position() -> None:
    # 36,000 codes: each of the 36 characters is expected 1,000 times per position (sd about 31). The bounds
    # are 6 sd wide, so a fair generator fails them about once in a billion runs, while a code whose first or
    # last character is fixed or drawn from part of the alphabet (a padding digit, a wrong base) falls outside.
    codes = [random_code(12) for _ in range(36_000)]
    for position in (0, 11):
        counts = Counter(code[position] for code in codes)
        assert set(counts) == set(TOKEN_ALPHABET)
        assert min(counts.values()) > 810 and max(counts.values()) < 1190, counts


def test_codes_do_not_repeat() -> None:
    codes = {random_code(20) for _ in range(10_000)}
    assert len(codes) == 10_000
