"""Caption text rules: clean BLIP's output and make sure no caption names a character or a film.

A LoRA trained on captions that name a character binds the look to that name; the captions must
describe what is in the picture (subject, clothes, pose, setting) and leave the style to the LoRA.
Matching is whole-word, case-insensitive and punctuation/accent-insensitive ("No-Face", "no face",
"NOFACE"; "Nausicaä", "nausicaa"); character names become a generic subject, titles are removed
with the words that tied them in ("from the movie …").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Distinctive names only: words that also occur in ordinary captions (Howl, San, Mei, Lin, "Castle in
# the Sky", "Only Yesterday") are scrubbed when a dataset's characters or manifest name them.
GHIBLI_CHARACTERS: tuple[str, ...] = (
    "Totoro", "Chibi Totoro", "Chu Totoro", "Catbus", "Nekobus", "Satsuki Kusakabe", "Mei Kusakabe",
    "Chihiro", "Chihiro Ogino", "Sen", "Haku", "Kohaku", "No-Face", "Kaonashi", "Yubaba", "Zeniba", "Kamaji",
    "Kiki", "Jiji", "Tombo", "Ursula", "Calcifer", "Sophie Hatter", "Markl", "Turnip Head", "Witch of the Waste",
    "Ashitaka", "Moro", "Lady Eboshi", "Eboshi", "Yakul", "Kodama", "Nausicaa", "Lord Yupa", "Kushana", "Teto",
    "Ponyo", "Sosuke", "Fujimoto", "Sheeta", "Pazu", "Captain Dola", "Muska", "Porco Rosso", "Marco Pagot",
    "Fio Piccolo", "Arrietty", "Marnie", "Anna Sasaki", "Jiro Horikoshi", "Princess Kaguya", "Shizuku Tsukishima",
    "Seiji Amasawa", "Baron Humbert", "Haru Yoshioka", "Mahito Maki", "Taeko Okajima", "Umi Matsuzaki", "Arren",
    "Therru", "Seita", "Setsuko", "Earwig", "Susuwatari",
)  # fmt: skip
GHIBLI_FILMS: tuple[str, ...] = (
    "Studio Ghibli", "Spirited Away", "Sen to Chihiro no Kamikakushi", "My Neighbor Totoro", "My Neighbour Totoro",
    "Tonari no Totoro", "Princess Mononoke", "Mononoke Hime", "Howl's Moving Castle", "Kiki's Delivery Service",
    "Laputa", "Laputa: Castle in the Sky", "Nausicaa of the Valley of the Wind", "Ponyo on the Cliff by the Sea",
    "The Secret World of Arrietty", "When Marnie Was There", "Whisper of the Heart", "Grave of the Fireflies",
    "Pom Poko", "My Neighbors the Yamadas", "The Cat Returns", "Tales from Earthsea", "From Up on Poppy Hill",
    "The Tale of the Princess Kaguya", "The Boy and the Heron", "Earwig and the Witch", "Ocean Waves",
)  # fmt: skip

_CHARACTER, _TITLE = "\x00", "\x01"  # placeholders while the grammar around a match is tidied
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.IGNORECASE)
_BLIP_ARTEFACT = re.compile(r"\ba+r+a+f+\w*\s*", re.IGNORECASE)  # "arafed", "araffe", "arrafed" …
_FILLER_OPENING = re.compile(r"^(?:there\s+(?:is|are)|this\s+is|it\s+is|here\s+is)\s+", re.IGNORECASE)
_REPEATED_PHRASE = re.compile(r"\b((?:\w+\s+){0,3}\w+)(?:[\s,]+\1\b)+", re.IGNORECASE)
_DANGLING_END = re.compile(r"(?:[\s,;:/-]+|\b(?:from|in|of|for|with|and|by|at|on|the|a|an)\s*)$", re.IGNORECASE)


def fold(text: str) -> str:
    """Accents stripped and typographic quotes/dashes made plain, so 'Nausicaä’s' reads 'Nausicaa's'."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return plain.translate(str.maketrans({"’": "'", "‘": "'", "`": "'", "–": "-", "—": "-"}))


def normalize_whitespace(text: str) -> str:
    return " ".join(text.split())


def _name_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """One alternation over every name; longest first so 'Chihiro Ogino' wins over 'Chihiro'."""
    alternatives = set()
    for name in names:
        words = re.findall(r"[a-z0-9]+", fold(name).lower())
        if words:
            # Any run of spaces/punctuation (or none) between words: "no-face", "no face", "noface".
            alternatives.add(r"[\W_]*".join(map(re.escape, words)))
    if not alternatives:
        return None
    ordered = sorted(alternatives, key=len, reverse=True)
    return re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(ordered) + r")(?![A-Za-z0-9])", re.IGNORECASE)


class NameScrubber:
    """Removes character names (→ `subject`) and film titles (→ nothing) from caption text."""

    def __init__(self, characters: Iterable[str], titles: Iterable[str], subject: str = "a character") -> None:
        self.characters = sorted({normalize_whitespace(name) for name in characters if name.strip()})
        character_keys = {fold(name).lower() for name in self.characters}
        # A name that is both (Porco Rosso) is treated as the character: replaced, not deleted.
        self.titles = sorted(
            {normalize_whitespace(t) for t in titles if t.strip() and fold(t).lower() not in character_keys}
        )
        self.subject = normalize_whitespace(subject)
        self._characters = _name_pattern(self.characters)
        self._titles = _name_pattern(self.titles)

    def names_in(self, text: str) -> list[str]:
        """The names and titles `text` mentions, as written there."""
        folded = fold(text)
        return [
            match.group(0)
            for pattern in (self._titles, self._characters)
            if pattern
            for match in pattern.finditer(folded)
        ]

    def scrub(self, text: str) -> str:
        marked = fold(text)
        if self._titles:
            marked = self._titles.sub(_TITLE, marked)
        if self._characters:
            marked = self._characters.sub(_CHARACTER, marked)
        if _TITLE not in marked and _CHARACTER not in marked:
            return normalize_whitespace(marked)
        return tidy(self._fill_placeholders(marked))

    def _fill_placeholders(self, marked: str) -> str:
        # "a girl named Chihiro" already has its subject: drop the name rather than add a second one.
        marked = re.sub(rf"\b(?:named|called|known\s+as|nicknamed)\s+{_CHARACTER}(?:'s)?", "", marked, flags=re.I)
        marked = re.sub(
            rf"(?:\b(?:from|in|of|for|like)\s+)?(?:\bthe\s+)?(?:\b(?:movie|film|anime)\s+)?{_TITLE}(?:'s)?"
            r"(?:\s+(?:movie|film|anime|style)\b)?",
            "",
            marked,
            flags=re.IGNORECASE,
        )
        core = _ARTICLE.sub("", self.subject)
        # Keep a 'the' the caption had ("the Totoro" → "the creature"); otherwise the subject's own article.
        return re.sub(
            rf"(?:\b(a|an|the)\s+)?{_CHARACTER}",
            lambda match: f"the {core}" if (match.group(1) or "").lower() == "the" else self.subject,
            marked,
            flags=re.IGNORECASE,
        )


def tidy(text: str) -> str:
    """Whitespace, punctuation and dangling words left where something was cut out."""
    text = re.sub(r"(^|\s)'s\b", r"\1", text)  # a possessive whose owner was removed
    text = re.sub(r"\(\s*\)|\[\s*\]", "", text)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", text)
    text = normalize_whitespace(text)
    text = re.sub(r"^[\s,.;:!?/-]+", "", text)
    previous = None
    while previous != text:
        previous, text = text, _DANGLING_END.sub("", text).rstrip()
    return _REPEATED_PHRASE.sub(r"\1", text)


def clean_blip_caption(text: str, prompt: str | None = None, keep_prompt: bool = False) -> str:
    """BLIP's raw text without its artefacts: 'arafed', 'there is a …' openings, repeated words."""
    text = normalize_whitespace(text)
    if prompt and not keep_prompt:
        prompt_words = normalize_whitespace(prompt).lower()
        if text.lower().startswith(prompt_words):
            text = text[len(prompt_words) :]
    text = _BLIP_ARTEFACT.sub("", text)
    text = _FILLER_OPENING.sub("", text.strip())
    return tidy(text)


def compose_caption(description: str, trigger: str | None = None, style_suffix: str | None = None) -> str:
    """'<trigger>, <description>, <style suffix>' with the empty parts left out."""
    parts = (normalize_whitespace(part or "") for part in (trigger, description, style_suffix))
    return ", ".join(part for part in parts if part)
