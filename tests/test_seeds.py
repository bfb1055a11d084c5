"""verify.seeds: the seed list it parses and the table it prints (the sweep itself is a dev run)."""
import pytest

from verify import seeds


@pytest.mark.parametrize("text,expected", [("0-3", [0, 1, 2, 3]), ("5", [5]),
                                           ("1,3,2-4", [1, 2, 3, 4]), ("2-2", [2])])
def test_seed_lists_parse(text, expected):
    assert seeds.parse_seeds(text) == expected


@pytest.mark.parametrize("text", ["", "a-b", "-1", "3-x", ","])
def test_bad_seed_lists_are_errors_naming_the_flag(text):
    with pytest.raises(ValueError, match="--seeds"):
        seeds.parse_seeds(text)


def test_summary_names_the_seeds_at_which_a_claim_did_not_pass():
    text = seeds.summary({0: {"P1": "pass", "A4": "pass"}, 1: {"P1": "pass", "A4": "fail"},
                          2: {"P1": "error", "A4": "fail"}})
    assert "| A4 | 3 | 1, 2 |" in text and "| P1 | 3 | 2 |" in text
    assert "2 of 3 runs failed a claim." in text
