"""A small sentiment task in the SST-2 layout that the project generates itself, for offline demos.

Sentences are templated movie-review fragments. Negations ("was not brilliant") and contrastive
clauses ("the plot was dull but the acting was superb", labelled by the clause after "but") mean
that no single word decides the label, yet a small pretrained encoder learns it in a few hundred steps.
"""

import random
from pathlib import Path

from hfcompress.errors import UsageError

POSITIVE = (
    "brilliant", "moving", "delightful", "superb", "charming", "gripping", "wonderful", "clever",
    "heartfelt", "stunning", "hilarious", "masterful", "touching", "inventive", "engaging", "beautiful",
    "witty", "powerful", "captivating", "remarkable", "good", "great", "excellent", "fun",
)  # fmt: skip
NEGATIVE = (
    "dull", "tedious", "clumsy", "boring", "lifeless", "awful", "predictable", "shallow", "confusing",
    "bland", "forgettable", "painful", "sloppy", "pointless", "flat", "dreary", "messy", "tiresome",
    "weak", "hollow", "bad", "terrible", "poor", "slow",
)  # fmt: skip
FILMS = (
    "this movie", "the film", "this picture", "the sequel", "this documentary", "the comedy",
    "this thriller", "the drama", "this remake", "the animated feature",
)  # fmt: skip
ASPECTS = (
    "the plot", "the acting", "the script", "the dialogue", "the soundtrack", "the cinematography",
    "the ending", "the direction", "the pacing", "the cast", "the story", "the humor", "the camera work",
    "the lead performance", "the editing", "the score", "the villain", "the premise",
)  # fmt: skip
INTENSIFIERS = ("", "", "very", "really", "truly", "remarkably", "utterly", "quite", "thoroughly", "rather")
VERBS = ("is", "was", "felt", "seemed")


def write_sentiment_task(out_dir: str | Path, n_train: int = 2000, n_dev: int = 400, seed: int = 0) -> Path:
    """Write `out_dir/sst2/train.tsv` and `dev.tsv` (header `sentence<TAB>label`) and return `out_dir`.

    Deterministic for a seed; both splits have balanced labels and no dev sentence appears in train.
    """
    for name, count in (("n_train", n_train), ("n_dev", n_dev)):
        if isinstance(count, bool) or not isinstance(count, int) or count < 2:
            raise UsageError(f"{name} must be a whole number of at least 2 sentences, not {count!r}.")
    rng = random.Random(seed)
    # Label 1 gets the smaller half of each split when its size is odd.
    wanted = {1: n_train // 2 + n_dev // 2, 0: n_train - n_train // 2 + n_dev - n_dev // 2}
    pools: dict[int, list[str]] = {0: [], 1: []}
    seen: set[str] = set()
    for _ in range(50 * (n_train + n_dev) + 1000):
        if all(len(pools[label]) == wanted[label] for label in pools):
            break
        label = 0 if len(pools[0]) < wanted[0] and (len(pools[1]) == wanted[1] or rng.random() < 0.5) else 1
        sentence = _sentence(rng, label)
        if sentence not in seen:
            seen.add(sentence)
            pools[label].append(sentence)
    if any(len(pools[label]) < wanted[label] for label in pools):
        raise UsageError(f"Cannot make {n_train + n_dev} distinct sentences; ask for fewer n_train or n_dev.")

    dev_counts = {1: n_dev // 2, 0: n_dev - n_dev // 2}
    splits = {
        "dev": [(s, label) for label in (0, 1) for s in pools[label][: dev_counts[label]]],
        "train": [(s, label) for label in (0, 1) for s in pools[label][dev_counts[label] :]],
    }
    folder = Path(out_dir) / "sst2"
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        rng.shuffle(rows)
        lines = ["sentence\tlabel\n", *(f"{sentence}\t{label}\n" for sentence, label in rows)]
        (folder / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    return Path(out_dir)


def _words(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def _adjective(rng: random.Random, positive: bool) -> str:
    return rng.choice(POSITIVE if positive else NEGATIVE)


def _sentence(rng: random.Random, label: int) -> str:
    positive = label == 1
    kind = rng.random()
    if kind < 0.3:  # plain: the adjective decides
        subject = rng.choice(FILMS + ASPECTS)
        return _words(subject, rng.choice(VERBS), rng.choice(INTENSIFIERS), _adjective(rng, positive), ".")
    if kind < 0.55:  # negated: the adjective has the opposite polarity
        adjective = _adjective(rng, not positive)
        film, aspect = rng.choice(FILMS), rng.choice(ASPECTS)
        return rng.choice(
            (
                _words(film, rng.choice(VERBS), "not", rng.choice(INTENSIFIERS), adjective, "."),
                _words(aspect, "was never", adjective, "."),
                _words("i would not call", film, adjective, "."),
                _words("nobody could call", aspect, adjective, "."),
                _words(film, "was hardly", adjective, "."),
            )
        )
    first, second = rng.sample(ASPECTS, 2)
    if kind < 0.8:  # contrast: the clause after "but" decides
        if rng.random() < 0.2:  # a negated first clause that agrees with the second in polarity
            opening = _words(first, "was not", _adjective(rng, positive))
        else:
            opening = _words(first, rng.choice(VERBS), _adjective(rng, not positive))
        closing = _words(second, rng.choice(VERBS), _adjective(rng, positive), ".")
        return _words(opening, rng.choice(("but", ", but")), closing)
    if kind < 0.9:  # concession: the main clause decides
        return _words(
            "although", first, rng.choice(VERBS), _adjective(rng, not positive), ",",
            second, rng.choice(VERBS), rng.choice(INTENSIFIERS), _adjective(rng, positive), ".",
        )  # fmt: skip
    return _words(  # agreement: both clauses share the polarity
        first, rng.choice(VERBS), _adjective(rng, positive), "and", second, rng.choice(VERBS),
        _adjective(rng, positive), ".",
    )  # fmt: skip
