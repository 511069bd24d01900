"""The caption rules: no name or title survives, ordinary words do, BLIP's artefacts go."""

from __future__ import annotations

import re

import pytest

from services.captioner.scrub import (
    GHIBLI_CHARACTERS,
    GHIBLI_FILMS,
    NameScrubber,
    clean_blip_caption,
    compose_caption,
)

DATASET_CHARACTERS = ["Chihiro", "Sen", "Chihiro Ogino", "Howl", "Wizard Howl", "No-Face", "Nausicaä"]
DATASET_TITLES = ["Spirited Away", "Howl's Moving Castle", "Castle in the Sky"]
SCRUBBER = NameScrubber([*GHIBLI_CHARACTERS, *DATASET_CHARACTERS], [*GHIBLI_FILMS, *DATASET_TITLES], "a young girl")

CRAFTED = [
    ("chihiro from spirited away standing in a field", "a young girl standing in a field"),
    ("a girl named Chihiro in a red dress, from the movie Spirited Away", "a girl in a red dress"),
    ("CHIHIRO OGINO walking on a bridge", "a young girl walking on a bridge"),
    ("Sen, holding a bucket, in SPIRITED AWAY style", "a young girl, holding a bucket"),
    ("chihiro's green shoes on a wooden floor", "a young girl's green shoes on a wooden floor"),
    ("Nausicaä’s glider above the sea", "a young girl's glider above the sea"),
    ("nausicaa standing on a hill", "a young girl standing on a hill"),
    ("the totoro sitting under a tree", "the young girl sitting under a tree"),
    ("No-Face, no face and NOFACE on a train", "a young girl and a young girl on a train"),
    ("a poster for howl's moving castle", "a poster"),
    ("wizard howl in a blue coat", "a young girl in a blue coat"),
    ("a painting of a house (Castle in the Sky)", "a painting of a house"),
    ("a man in a hat, Kiki's Delivery Service", "a man in a hat"),
    ("ponyo and sosuke on a boat.", "a young girl and a young girl on a boat."),
]


@pytest.mark.parametrize(("caption", "expected"), CRAFTED)
def test_names_titles_and_aliases_are_removed_with_tidy_grammar(caption: str, expected: str) -> None:
    scrubbed = SCRUBBER.scrub(caption)
    assert scrubbed == expected
    assert SCRUBBER.names_in(scrubbed) == []


def test_no_name_survives_in_any_form() -> None:
    """Every name in every variant the rules promise: case, possessive, punctuation, spacing."""
    for name in [*SCRUBBER.characters, *SCRUBBER.titles]:
        words = re.findall(r"\w+", name)
        for variant in (name, name.upper(), name.lower(), f"{name}'s", "-".join(words), " ".join(words)):
            scrubbed = SCRUBBER.scrub(f"a picture of {variant}, sitting in a field")
            assert SCRUBBER.names_in(scrubbed) == [], (variant, scrubbed)
            assert name.lower() not in scrubbed.lower()


@pytest.mark.parametrize(
    "ordinary",
    [
        "a sensible woman in a sentimental scene with a spirited dog running away",
        "a girl with short hair standing next to a moored boat in the harbour",
        "a seaside town with a sender, a senator and a hawkish bird",
        "a boy in a kimono holding a lantern at night",
        "a green field under a blue sky with white clouds",
    ],
)
def test_ordinary_words_are_left_alone(ordinary: str) -> None:
    assert SCRUBBER.scrub(ordinary) == ordinary


def test_the_subject_keeps_its_own_article() -> None:
    scrubber = NameScrubber(["Jiji"], [], subject="an old black cat")
    assert scrubber.scrub("jiji on a broom") == "an old black cat on a broom"
    assert scrubber.scrub("the jiji on a broom") == "the old black cat on a broom"


def test_a_name_that_is_also_a_title_is_replaced_not_deleted() -> None:
    scrubber = NameScrubber(["Porco Rosso"], ["Porco Rosso"], subject="a pig")
    assert scrubber.scrub("porco rosso flying a red plane") == "a pig flying a red plane"


@pytest.mark.parametrize(
    ("raw", "prompt", "keep_prompt", "expected"),
    [
        ("arafed girl in a red dress standing in a field", None, False, "girl in a red dress standing in a field"),
        ("there is a arafed woman with a hat", None, False, "a woman with a hat"),
        ("there are two cats cats sitting on a bench", None, False, "two cats sitting on a bench"),
        ("a man in a field in a field with a dog", None, False, "a man in a field with a dog"),
        ("an illustration of a boy on a bike", "an illustration of", False, "a boy on a bike"),
        ("an illustration of a boy on a bike", "an illustration of", True, "an illustration of a boy on a bike"),
        ("a girl sitting on a", None, False, "a girl sitting"),
    ],
)
def test_blip_artefacts_are_stripped(raw: str, prompt: str | None, keep_prompt: bool, expected: str) -> None:
    assert clean_blip_caption(raw, prompt, keep_prompt) == expected


def test_trigger_and_suffix_frame_the_description() -> None:
    assert compose_caption("a girl on a bridge", "ghblstyle", "in Ghibli style") == (
        "ghblstyle, a girl on a bridge, in Ghibli style"
    )
    assert compose_caption("a girl on a bridge") == "a girl on a bridge"
