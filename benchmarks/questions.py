"""A labelled set of short factual questions, generated from a seed: what the
routing benchmark and the default policy's judge are fitted and tested on.

Eleven kinds, each of graded difficulty: arithmetic (add, subtract, multiply),
unit conversions, the number after a number written in words, comparisons,
weekdays and months (computed with `datetime`), country capitals and
continents (the table below), and letters of common words. Every row names the
answers it accepts and, where a wrong answer would also mention them, the ones
it rejects, leaving out what the question itself names, which an answer may
echo (router.answers matches whole words after normalisation). The
split is by question text, so fit and test share no question.

    python -m benchmarks.questions > benchmarks/data/questions.jsonl
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import sys
from collections.abc import Iterator

SEED = 13
PER_KIND = 175
TEST_SHARE = 0.4

# country, capital, continent: a small table written for this set.
COUNTRIES = [
    ("France", "Paris", "Europe"), ("Germany", "Berlin", "Europe"), ("Italy", "Rome", "Europe"),
    ("Spain", "Madrid", "Europe"), ("Portugal", "Lisbon", "Europe"), ("Poland", "Warsaw", "Europe"),
    ("Greece", "Athens", "Europe"), ("Sweden", "Stockholm", "Europe"), ("Norway", "Oslo", "Europe"),
    ("Finland", "Helsinki", "Europe"), ("Denmark", "Copenhagen", "Europe"), ("Austria", "Vienna", "Europe"),
    ("Hungary", "Budapest", "Europe"), ("Ireland", "Dublin", "Europe"), ("Belgium", "Brussels", "Europe"),
    ("Netherlands", "Amsterdam", "Europe"), ("Czech Republic", "Prague", "Europe"),
    ("Romania", "Bucharest", "Europe"), ("Bulgaria", "Sofia", "Europe"), ("Croatia", "Zagreb", "Europe"),
    ("Serbia", "Belgrade", "Europe"), ("Ukraine", "Kyiv", "Europe"), ("Russia", "Moscow", "Europe"),
    ("Switzerland", "Bern", "Europe"), ("Iceland", "Reykjavik", "Europe"), ("Estonia", "Tallinn", "Europe"),
    ("Latvia", "Riga", "Europe"), ("Lithuania", "Vilnius", "Europe"), ("Slovakia", "Bratislava", "Europe"),
    ("Slovenia", "Ljubljana", "Europe"), ("Japan", "Tokyo", "Asia"), ("China", "Beijing", "Asia"),
    ("India", "New Delhi", "Asia"), ("Thailand", "Bangkok", "Asia"), ("Vietnam", "Hanoi", "Asia"),
    ("Indonesia", "Jakarta", "Asia"), ("Philippines", "Manila", "Asia"), ("South Korea", "Seoul", "Asia"),
    ("Pakistan", "Islamabad", "Asia"), ("Bangladesh", "Dhaka", "Asia"), ("Nepal", "Kathmandu", "Asia"),
    ("Iran", "Tehran", "Asia"), ("Iraq", "Baghdad", "Asia"), ("Saudi Arabia", "Riyadh", "Asia"),
    ("Turkey", "Ankara", "Asia"), ("Israel", "Jerusalem", "Asia"), ("Mongolia", "Ulaanbaatar", "Asia"),
    ("Malaysia", "Kuala Lumpur", "Asia"), ("Afghanistan", "Kabul", "Asia"), ("Syria", "Damascus", "Asia"),
    ("Egypt", "Cairo", "Africa"), ("Kenya", "Nairobi", "Africa"), ("Nigeria", "Abuja", "Africa"),
    ("Ethiopia", "Addis Ababa", "Africa"), ("Ghana", "Accra", "Africa"), ("Morocco", "Rabat", "Africa"),
    ("Algeria", "Algiers", "Africa"), ("Tunisia", "Tunis", "Africa"), ("Senegal", "Dakar", "Africa"),
    ("Uganda", "Kampala", "Africa"), ("Tanzania", "Dodoma", "Africa"), ("Zimbabwe", "Harare", "Africa"),
    ("Angola", "Luanda", "Africa"), ("Sudan", "Khartoum", "Africa"), ("Libya", "Tripoli", "Africa"),
    ("Mali", "Bamako", "Africa"), ("Zambia", "Lusaka", "Africa"), ("Rwanda", "Kigali", "Africa"),
    ("Canada", "Ottawa", "North America"), ("United States", "Washington", "North America"),
    ("Mexico", "Mexico City", "North America"), ("Cuba", "Havana", "North America"),
    ("Jamaica", "Kingston", "North America"), ("Guatemala", "Guatemala City", "North America"),
    ("Panama", "Panama City", "North America"), ("Honduras", "Tegucigalpa", "North America"),
    ("Brazil", "Brasilia", "South America"), ("Argentina", "Buenos Aires", "South America"),
    ("Chile", "Santiago", "South America"), ("Peru", "Lima", "South America"),
    ("Colombia", "Bogota", "South America"), ("Venezuela", "Caracas", "South America"),
    ("Ecuador", "Quito", "South America"), ("Uruguay", "Montevideo", "South America"),
    ("Paraguay", "Asuncion", "South America"), ("Bolivia", "Sucre", "South America"),
    ("Australia", "Canberra", "Oceania"), ("New Zealand", "Wellington", "Oceania"), ("Fiji", "Suva", "Oceania"),
    ("Papua New Guinea", "Port Moresby", "Oceania"), ("Samoa", "Apia", "Oceania"),
]
CONTINENTS = sorted({c for _, _, c in COUNTRIES})

# unit, target unit, factor
CONVERSIONS = [
    ("kilometres", "metres", 1000), ("metres", "centimetres", 100), ("kilograms", "grams", 1000),
    ("hours", "minutes", 60), ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7),
    ("dozens", "items", 12), ("litres", "millilitres", 1000), ("years", "months", 12),
    ("centimetres", "millimetres", 10), ("feet", "inches", 12),
]

WORDS = ["apple", "banana", "orange", "house", "garden", "window", "river", "mountain", "pencil", "yellow",
         "guitar", "kitchen", "doctor", "summer", "winter", "planet", "island", "rabbit", "bottle", "castle",
         "dragon", "forest", "candle", "jacket", "monkey", "number", "ocean", "pocket", "silver", "tomato"]
ORDINALS = ["first", "second", "third", "fourth", "fifth", "last"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]


def number_words(n: int) -> str:
    """English words for 0 <= n < 1,000,000 ("three hundred and five")."""
    units = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
             "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
    tens = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
    if n < 20:
        return units[n]
    if n < 100:
        return tens[n // 10] + ("-" + units[n % 10] if n % 10 else "")
    if n < 1000:
        rest = n % 100
        return units[n // 100] + " hundred" + (" and " + number_words(rest) if rest else "")
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + (" " + number_words(rest) if rest else "")


def _digits(rng: random.Random, level: int) -> int:
    return rng.randint(10 ** (level - 1) if level > 1 else 1, 10 ** level - 1)


def _arithmetic(rng: random.Random, op: str) -> tuple[str, list[str], list[str], int]:
    level = rng.choice([1, 1, 2, 2, 3])
    a, b = _digits(rng, level), _digits(rng, rng.randint(1, level))
    if op == "add":
        return f"What is {a} plus {b}?", [str(a + b)], [], level
    if op == "subtract":
        a, b = max(a, b), min(a, b)
        return f"What is {a} minus {b}?", [str(a - b)], [], level
    a, b = _digits(rng, min(level, 2)), rng.randint(2, 12 if level < 3 else 19)
    return f"What is {a} times {b}?", [str(a * b)], [], level


def _question(kind: str, rng: random.Random) -> tuple[str, list[str], list[str], int]:
    """(question, accepted answers, rejected answers, difficulty 1..3)."""
    if kind in ("add", "subtract", "multiply"):
        return _arithmetic(rng, kind)
    if kind == "convert":
        unit, target, factor = rng.choice(CONVERSIONS)
        value = rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25])
        level = 1 if value == 1 else 2 if value < 10 else 3
        return f"How many {target} are in {value} {unit}?", [str(value * factor)], [], level
    if kind == "next_number":
        n = rng.choice([rng.randint(1, 19), rng.randint(20, 99), rng.randint(100, 999)])
        level = 1 if n < 20 else 2 if n < 100 else 3
        return f"What number comes right after {number_words(n)}?", [str(n + 1)], [], level
    if kind == "compare":
        level = rng.choice([1, 2, 3])
        a = _digits(rng, level + 1)
        b = a + rng.choice([-1, 1]) * rng.randint(1, max(1, a // (3 * level)))
        if b == a or b < 1:
            b = a + 1
        big, small = max(a, b), min(a, b)
        if rng.random() < 0.5:
            return f"Which is larger, {a} or {b}?", [str(big)], [str(small)], level
        return f"Which is smaller, {a} or {b}?", [str(small)], [str(big)], level
    if kind == "weekday":
        if rng.random() < 0.5:
            start, step = rng.randrange(7), rng.choice([1, 1, 2, 3, 4, 10])
            answer = WEEKDAYS[(start + step) % 7]
            others = [d for d in WEEKDAYS if d not in (answer, WEEKDAYS[start])]
            day = "day" if step == 1 else "days"
            return (f"What day of the week is {step} {day} after {WEEKDAYS[start]}?", [answer], others,
                    1 if step == 1 else 2)
        date = dt.date(2000, 1, 1) + dt.timedelta(days=rng.randrange(365 * 30))
        answer = WEEKDAYS[date.weekday()]
        return (f"What day of the week was {MONTHS[date.month - 1]} {date.day}, {date.year}?", [answer],
                [d for d in WEEKDAYS if d != answer], 3)
    if kind == "month":
        start, step = rng.randrange(12), rng.choice([1, 1, 2, 3, 5])
        answer = MONTHS[(start + step) % 12]
        others = [m for m in MONTHS if m not in (answer, MONTHS[start])]
        if step == 1:
            return f"Which month comes after {MONTHS[start]}?", [answer], others, 1
        return f"Which month is {step} months after {MONTHS[start]}?", [answer], others, 2
    if kind == "capital":
        country, capital, _ = rng.choice(COUNTRIES)
        return f"What is the capital of {country}?", [capital], [], 2
    if kind == "continent":
        country, _, continent = rng.choice(COUNTRIES)
        return (f"On which continent is {country}?", [continent], [c for c in CONTINENTS if c != continent], 2)
    if kind == "letter":
        word, ordinal = rng.choice(WORDS), rng.choice(ORDINALS)
        index = -1 if ordinal == "last" else ORDINALS.index(ordinal)
        letter = word[index]
        if rng.random() < 0.5:
            return (f"What is the {ordinal} letter of the word \"{word}\"?", [letter], [], 1 if index == 0 else 2)
        return f"How many letters are in the word \"{word}\"?", [str(len(word))], [], 2
    raise ValueError(f"unknown kind {kind!r}")


KINDS = ("add", "subtract", "multiply", "convert", "next_number", "compare", "weekday", "month", "capital",
         "continent", "letter")
INSTRUCTION = "Answer in a few words."


def questions(seed: int = SEED, per_kind: int = PER_KIND) -> Iterator[dict]:
    """Distinct questions, `per_kind` of each kind (fewer where a kind has fewer distinct ones)."""
    rng = random.Random(seed)
    seen: set[str] = set()
    for kind in KINDS:
        made = tries = 0
        while made < per_kind and tries < per_kind * 20:
            tries += 1
            question, accepted, rejected, level = _question(kind, rng)
            if question in seen:
                continue
            seen.add(question)
            made += 1
            # The split hangs on the question text alone: stable under reordering or new kinds.
            digest = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) / 16**8
            yield {"kind": kind, "level": level, "prompt": f"{question} {INSTRUCTION}", "question": question,
                   "answers": accepted, "rejected": rejected, "split": "test" if digest < TEST_SHARE else "fit"}


def main() -> int:
    for row in questions():
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
