"""A labelled set of short factual questions, generated from a seed: what the
routing benchmark and the default policy's judge are fitted and tested on.

22 kinds. Computed ones, of graded difficulty: arithmetic (add, subtract,
multiply), unit conversions, the number after a number written in words,
comparisons, weekdays and months (computed with `datetime`), letters of common
words, Roman numerals and number sequences. Known ones, from small tables
below: country capitals, continents, currencies and languages, chemical
symbols, authors of books, opposites, irregular plurals and past tenses, young
animals, and one-fact general knowledge. Every row names the
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

# Knowledge and language kinds (element, author, currency, language, young, opposite, plural,
# past_tense, trivia): small tables written for this set, so the judge sees questions whose answer
# the model must know rather than compute.
ELEMENTS = [
    ("hydrogen", "H"), ("helium", "He"), ("lithium", "Li"), ("carbon", "C"), ("nitrogen", "N"), ("oxygen", "O"),
    ("fluorine", "F"), ("neon", "Ne"), ("sodium", "Na"), ("magnesium", "Mg"), ("aluminium", "Al"),
    ("silicon", "Si"), ("phosphorus", "P"), ("sulfur", "S"), ("chlorine", "Cl"), ("argon", "Ar"),
    ("potassium", "K"), ("calcium", "Ca"), ("titanium", "Ti"), ("chromium", "Cr"), ("manganese", "Mn"),
    ("iron", "Fe"), ("cobalt", "Co"), ("nickel", "Ni"), ("copper", "Cu"), ("zinc", "Zn"), ("arsenic", "As"),
    ("bromine", "Br"), ("krypton", "Kr"), ("silver", "Ag"), ("tin", "Sn"), ("iodine", "I"), ("xenon", "Xe"),
    ("platinum", "Pt"), ("gold", "Au"), ("mercury", "Hg"), ("lead", "Pb"), ("uranium", "U"), ("radon", "Rn"),
    ("tungsten", "W"), ("plutonium", "Pu"), ("barium", "Ba"), ("boron", "B"), ("beryllium", "Be"),
]
# other spellings an answer may use
ELEMENT_SPELLINGS = {"aluminium": ["aluminum"], "sulfur": ["sulphur"]}
# symbols that are also English words: never asked for, never counted as a wrong answer
WORD_SYMBOLS = {"He", "Be", "As", "I"}

# title, accepted author names (surnames as an answer gives them)
BOOKS = [
    ("Hamlet", ["Shakespeare"]), ("Romeo and Juliet", ["Shakespeare"]), ("Macbeth", ["Shakespeare"]),
    ("Pride and Prejudice", ["Austen"]), ("Emma", ["Austen"]), ("Oliver Twist", ["Dickens"]),
    ("A Christmas Carol", ["Dickens"]), ("Great Expectations", ["Dickens"]), ("War and Peace", ["Tolstoy"]),
    ("Anna Karenina", ["Tolstoy"]), ("Crime and Punishment", ["Dostoevsky", "Dostoyevsky"]),
    ("Don Quixote", ["Cervantes"]), ("Moby-Dick", ["Melville"]), ("The Adventures of Tom Sawyer", ["Twain"]),
    ("Adventures of Huckleberry Finn", ["Twain"]), ("Nineteen Eighty-Four", ["Orwell"]),
    ("Animal Farm", ["Orwell"]), ("The Great Gatsby", ["Fitzgerald"]), ("To Kill a Mockingbird", ["Harper Lee"]),
    ("Frankenstein", ["Shelley"]), ("Dracula", ["Stoker"]), ("Jane Eyre", ["Bronte"]),
    ("Wuthering Heights", ["Bronte"]), ("The Odyssey", ["Homer"]), ("The Iliad", ["Homer"]),
    ("Les Miserables", ["Hugo"]), ("The Divine Comedy", ["Dante"]), ("Ulysses", ["Joyce"]),
    ("The Old Man and the Sea", ["Hemingway"]), ("The Catcher in the Rye", ["Salinger"]),
    ("Brave New World", ["Huxley"]), ("The Hobbit", ["Tolkien"]), ("The Lord of the Rings", ["Tolkien"]),
    ("Harry Potter and the Philosopher's Stone", ["Rowling"]), ("Alice's Adventures in Wonderland", ["Carroll"]),
    ("On the Origin of Species", ["Darwin"]), ("A Brief History of Time", ["Hawking"]),
    ("The Canterbury Tales", ["Chaucer"]), ("Robinson Crusoe", ["Defoe"]), ("Gulliver's Travels", ["Swift"]),
    ("Treasure Island", ["Stevenson"]), ("The Jungle Book", ["Kipling"]), ("Little Women", ["Alcott"]),
    ("The Picture of Dorian Gray", ["Wilde"]), ("Of Mice and Men", ["Steinbeck"]),
    ("The Grapes of Wrath", ["Steinbeck"]), ("One Hundred Years of Solitude", ["Marquez"]),
    ("Madame Bovary", ["Flaubert"]), ("The Metamorphosis", ["Kafka"]), ("Faust", ["Goethe"]),
    ("The Time Machine", ["Wells"]), ("Twenty Thousand Leagues Under the Seas", ["Verne"]),
    ("Around the World in Eighty Days", ["Verne"]), ("The Three Musketeers", ["Dumas"]),
    ("Fahrenheit 451", ["Bradbury"]), ("Charlie and the Chocolate Factory", ["Dahl"]),
    ("The Cat in the Hat", ["Seuss"]), ("The Communist Manifesto", ["Marx", "Engels"]),
    ("The Republic", ["Plato"]), ("The Prince", ["Machiavelli"]), ("The Art of War", ["Sun Tzu", "Sunzi"]),
]

# country, accepted currency names (singular and plural)
CURRENCIES = [
    ("Japan", ["yen"]), ("China", ["yuan", "renminbi"]), ("India", ["rupee"]),
    ("the United Kingdom", ["pound", "sterling"]),
    ("the United States", ["dollar"]), ("Canada", ["dollar"]), ("Australia", ["dollar"]), ("Mexico", ["peso"]),
    ("Brazil", ["real", "reais"]), ("Russia", ["ruble", "rouble"]), ("South Africa", ["rand"]),
    ("Switzerland", ["franc"]), ("Sweden", ["krona", "kronor"]), ("Norway", ["krone", "kroner"]),
    ("Denmark", ["krone", "kroner"]), ("Poland", ["zloty"]), ("Turkey", ["lira"]), ("South Korea", ["won"]),
    ("Thailand", ["baht"]), ("Vietnam", ["dong"]), ("Indonesia", ["rupiah"]), ("Israel", ["shekel"]),
    ("Egypt", ["pound"]), ("Nigeria", ["naira"]), ("Kenya", ["shilling"]), ("Argentina", ["peso"]),
    ("Chile", ["peso"]), ("Colombia", ["peso"]), ("the Philippines", ["peso"]), ("Hungary", ["forint"]),
    ("the Czech Republic", ["koruna", "crown"]), ("Saudi Arabia", ["riyal"]), ("Pakistan", ["rupee"]),
    ("Malaysia", ["ringgit"]), ("Germany", ["euro"]), ("France", ["euro"]), ("Italy", ["euro"]),
    ("Spain", ["euro"]), ("the Netherlands", ["euro"]), ("Ireland", ["euro"]), ("Greece", ["euro"]),
    ("Portugal", ["euro"]), ("Austria", ["euro"]), ("Finland", ["euro"]), ("New Zealand", ["dollar"]),
    ("Singapore", ["dollar"]), ("Bangladesh", ["taka"]), ("Ukraine", ["hryvnia"]), ("Iceland", ["krona"]),
]

# country, accepted languages
LANGUAGES = [
    ("Brazil", ["Portuguese"]), ("Mexico", ["Spanish"]), ("Argentina", ["Spanish"]), ("Egypt", ["Arabic"]),
    ("Saudi Arabia", ["Arabic"]), ("Iran", ["Persian", "Farsi"]), ("Germany", ["German"]),
    ("Austria", ["German"]), ("France", ["French"]), ("Italy", ["Italian"]), ("Japan", ["Japanese"]),
    ("China", ["Chinese", "Mandarin"]), ("South Korea", ["Korean"]), ("Russia", ["Russian"]),
    ("Poland", ["Polish"]), ("the Netherlands", ["Dutch"]), ("Sweden", ["Swedish"]), ("Norway", ["Norwegian"]),
    ("Denmark", ["Danish"]), ("Finland", ["Finnish"]), ("Greece", ["Greek"]), ("Turkey", ["Turkish"]),
    ("Hungary", ["Hungarian"]), ("Portugal", ["Portuguese"]), ("Spain", ["Spanish"]), ("Thailand", ["Thai"]),
    ("Vietnam", ["Vietnamese"]), ("Indonesia", ["Indonesian"]), ("Israel", ["Hebrew"]),
    ("Ukraine", ["Ukrainian"]), ("the Czech Republic", ["Czech"]), ("Romania", ["Romanian"]),
    ("Colombia", ["Spanish"]), ("Chile", ["Spanish"]), ("Peru", ["Spanish"]), ("Cuba", ["Spanish"]),
    ("Iceland", ["Icelandic"]), ("Pakistan", ["Urdu"]), ("Bangladesh", ["Bengali", "Bangla"]),
    ("Ethiopia", ["Amharic"]), ("Mongolia", ["Mongolian"]), ("Malaysia", ["Malay"]),
]

# animal, accepted names of its young
YOUNG = [
    ("cat", ["kitten"]), ("dog", ["puppy", "pup"]), ("cow", ["calf"]), ("horse", ["foal", "colt", "filly"]),
    ("sheep", ["lamb"]), ("goat", ["kid"]), ("pig", ["piglet"]), ("duck", ["duckling"]), ("frog", ["tadpole"]),
    ("kangaroo", ["joey"]), ("bear", ["cub"]), ("lion", ["cub"]), ("tiger", ["cub"]), ("deer", ["fawn"]),
    ("swan", ["cygnet"]), ("goose", ["gosling"]), ("owl", ["owlet"]), ("chicken", ["chick"]),
    ("eagle", ["eaglet"]), ("seal", ["pup"]), ("whale", ["calf"]), ("elephant", ["calf"]), ("fox", ["kit", "cub"]),
    ("wolf", ["pup", "cub"]), ("giraffe", ["calf"]), ("zebra", ["foal"]), ("donkey", ["foal"]),
    ("butterfly", ["caterpillar", "larva"]), ("turkey", ["poult"]), ("hare", ["leveret"]),
]

# word, accepted opposites
OPPOSITES = [
    ("hot", ["cold"]), ("big", ["small", "little"]), ("tall", ["short"]), ("fast", ["slow"]),
    ("happy", ["sad", "unhappy"]), ("up", ["down"]), ("open", ["closed", "shut"]), ("empty", ["full"]),
    ("early", ["late"]), ("rich", ["poor"]), ("wet", ["dry"]), ("strong", ["weak"]), ("thick", ["thin"]),
    ("wide", ["narrow"]), ("high", ["low"]), ("cheap", ["expensive"]), ("clean", ["dirty"]), ("day", ["night"]),
    ("left", ["right"]), ("north", ["south"]), ("east", ["west"]), ("push", ["pull"]), ("win", ["lose"]),
    ("love", ["hate"]), ("true", ["false"]), ("alive", ["dead"]), ("buy", ["sell"]), ("inside", ["outside"]),
    ("above", ["below"]), ("before", ["after"]), ("question", ["answer"]), ("friend", ["enemy", "foe"]),
    ("deep", ["shallow"]), ("asleep", ["awake"]), ("ancient", ["modern"]), ("remember", ["forget"]),
    ("increase", ["decrease"]), ("maximum", ["minimum"]), ("victory", ["defeat"]), ("arrival", ["departure"]),
    ("success", ["failure"]), ("visible", ["invisible"]), ("possible", ["impossible"]),
    ("polite", ["rude", "impolite"]), ("guilty", ["innocent"]), ("noisy", ["quiet", "silent"]),
    ("heavy", ["light"]), ("smooth", ["rough"]), ("sweet", ["sour", "bitter"]), ("first", ["last"]),
    ("never", ["always"]), ("borrow", ["lend"]), ("entrance", ["exit"]), ("ceiling", ["floor"]),
    ("dangerous", ["safe"]), ("minor", ["major"]), ("forward", ["backward", "backwards"]), ("top", ["bottom"]),
]

# singular, accepted plurals (irregular, or the rule a learner gets wrong)
PLURALS = [
    ("mouse", ["mice"]), ("goose", ["geese"]), ("child", ["children"]), ("man", ["men"]), ("woman", ["women"]),
    ("tooth", ["teeth"]), ("foot", ["feet"]), ("person", ["people", "persons"]), ("ox", ["oxen"]),
    ("cactus", ["cacti", "cactuses"]), ("fungus", ["fungi", "funguses"]), ("nucleus", ["nuclei"]),
    ("crisis", ["crises"]), ("analysis", ["analyses"]), ("thesis", ["theses"]), ("phenomenon", ["phenomena"]),
    ("criterion", ["criteria"]), ("leaf", ["leaves"]), ("knife", ["knives"]), ("wife", ["wives"]),
    ("life", ["lives"]), ("wolf", ["wolves"]), ("half", ["halves"]), ("loaf", ["loaves"]), ("shelf", ["shelves"]),
    ("thief", ["thieves"]), ("calf", ["calves"]), ("potato", ["potatoes"]), ("tomato", ["tomatoes"]),
    ("hero", ["heroes"]), ("box", ["boxes"]), ("bus", ["buses", "busses"]), ("baby", ["babies"]),
    ("city", ["cities"]), ("party", ["parties"]), ("story", ["stories"]), ("church", ["churches"]),
    ("glass", ["glasses"]), ("dish", ["dishes"]), ("fox", ["foxes"]), ("louse", ["lice"]), ("die", ["dice"]),
    ("axis", ["axes"]), ("bacterium", ["bacteria"]), ("alumnus", ["alumni"]), ("stimulus", ["stimuli"]),
]

# verb, accepted past tenses
PAST_TENSES = [
    ("go", ["went"]), ("eat", ["ate"]), ("see", ["saw"]), ("take", ["took"]), ("give", ["gave"]),
    ("write", ["wrote"]), ("run", ["ran"]), ("swim", ["swam"]), ("sing", ["sang"]), ("drink", ["drank"]),
    ("begin", ["began"]), ("fly", ["flew"]), ("know", ["knew"]), ("grow", ["grew"]), ("throw", ["threw"]),
    ("draw", ["drew"]), ("speak", ["spoke"]), ("break", ["broke"]), ("choose", ["chose"]), ("freeze", ["froze"]),
    ("drive", ["drove"]), ("ride", ["rode"]), ("rise", ["rose"]), ("steal", ["stole"]), ("wake", ["woke"]),
    ("forget", ["forgot"]), ("get", ["got"]), ("sit", ["sat"]), ("stand", ["stood"]),
    ("understand", ["understood"]), ("feel", ["felt"]), ("keep", ["kept"]), ("sleep", ["slept"]),
    ("leave", ["left"]), ("meet", ["met"]), ("teach", ["taught"]), ("catch", ["caught"]), ("buy", ["bought"]),
    ("bring", ["brought"]), ("think", ["thought"]), ("fight", ["fought"]), ("seek", ["sought"]),
    ("sell", ["sold"]), ("tell", ["told"]), ("find", ["found"]), ("hold", ["held"]), ("make", ["made"]),
    ("pay", ["paid"]), ("say", ["said"]), ("build", ["built"]), ("send", ["sent"]), ("spend", ["spent"]),
    ("lose", ["lost"]), ("win", ["won"]), ("hear", ["heard"]), ("shake", ["shook"]), ("fall", ["fell"]),
    ("bite", ["bit"]), ("hide", ["hid"]), ("shoot", ["shot"]), ("feed", ["fed"]), ("lead", ["led"]),
    ("dig", ["dug"]), ("swing", ["swung"]), ("wear", ["wore"]), ("tear", ["tore"]), ("come", ["came"]),
    ("become", ["became"]), ("do", ["did"]), ("have", ["had"]),
]

# question, accepted, rejected: general knowledge, one fact each
TRIVIA = [
    ("How many legs does a spider have?", ["8"], []), ("How many legs does an insect have?", ["6"], []),
    ("How many sides does a hexagon have?", ["6"], []), ("How many sides does a triangle have?", ["3"], []),
    ("How many sides does an octagon have?", ["8"], []), ("How many sides does a pentagon have?", ["5"], []),
    ("How many continents are there?", ["7"], []), ("How many days are in a leap year?", ["366"], []),
    ("How many days are in a week?", ["7"], []), ("How many hours are in a day?", ["24"], []),
    ("How many players does a football (soccer) team have on the field?", ["11"], []),
    ("How many strings does a standard guitar have?", ["6"], []),
    ("How many planets are in the solar system?", ["8"], []),
    ("How many bones are in the adult human body?", ["206"], []),
    ("How many teeth does an adult human usually have?", ["32"], []),
    ("What is the boiling point of water in degrees Celsius?", ["100"], []),
    ("What is the freezing point of water in degrees Fahrenheit?", ["32"], []),
    ("Which planet is known as the Red Planet?", ["Mars"], ["Jupiter", "Venus", "Mercury", "Saturn"]),
    ("What is the largest planet in the solar system?", ["Jupiter"], ["Saturn", "Mars", "Earth", "Neptune"]),
    ("Which planet is closest to the Sun?", ["Mercury"], ["Venus", "Mars", "Earth", "Jupiter"]),
    ("What is the largest ocean on Earth?", ["Pacific"], ["Atlantic", "Indian", "Arctic"]),
    ("What is the tallest mountain in the world?", ["Everest"], ["K2", "Kilimanjaro"]),
    ("What gas do plants take in from the air to make food?", ["carbon dioxide", "CO2"], ["oxygen"]),
    ("What gas do humans need to breathe to live?", ["oxygen"], ["carbon dioxide", "nitrogen"]),
    ("What is the chemical formula of water?", ["H2O"], []),
    ("What is the hardest natural substance?", ["diamond", "diamonds"], []),
    ("Who was the first president of the United States?", ["Washington"], ["Lincoln", "Jefferson", "Adams"]),
    ("Who painted the Mona Lisa?", ["Leonardo", "da Vinci"], ["Michelangelo", "Raphael", "Picasso"]),
    ("Who painted The Starry Night?", ["Gogh"], ["Monet", "Picasso", "Leonardo"]),
    ("Who developed the theory of relativity?", ["Einstein"], ["Newton", "Darwin"]),
    ("Who discovered penicillin?", ["Fleming"], ["Pasteur", "Curie"]),
    ("Who is credited with inventing the telephone?", ["Bell"], ["Edison", "Tesla"]),
    ("Who was the first person to walk on the Moon?", ["Armstrong"], ["Aldrin", "Gagarin"]),
    ("In which year did World War II end?", ["1945"], []), ("In which year did World War I begin?", ["1914"], []),
    ("In which year did the Titanic sink?", ["1912"], []),
    ("In which year did humans first land on the Moon?", ["1969"], []),
    ("What is the fastest land animal?", ["cheetah"], ["lion", "horse", "leopard"]),
    ("What is the largest land animal?", ["elephant"], ["giraffe", "rhinoceros", "hippopotamus"]),
    ("What is the tallest animal in the world?", ["giraffe"], ["elephant"]),
    ("What sweet food do bees make?", ["honey"], []),
    ("What fruit is the main ingredient of guacamole?", ["avocado", "avocados"], []),
    ("What colour do you get by mixing blue and yellow?", ["green"], ["orange", "purple"]),
    ("What colour do you get by mixing red and white?", ["pink"], ["orange", "purple"]),
    ("What colour do you get by mixing red and yellow?", ["orange"], ["green", "purple"]),
    ("What is the largest country in the world by area?", ["Russia"], ["Canada", "China", "United States"]),
    ("What is the smallest country in the world?", ["Vatican"], ["Monaco", "San Marino"]),
    ("What is the square root of 81?", ["9"], []), ("What is the square root of 144?", ["12"], []),
    ("Which musical instrument has 88 keys?", ["piano"], []),
    ("Which organ pumps blood through the human body?", ["heart"], ["lungs", "liver", "brain"]),
    ("What is the largest organ of the human body?", ["skin"], ["liver", "heart", "brain"]),
    ("Which metal is liquid at room temperature?", ["mercury"], []),
    ("What is the centre of an atom called?", ["nucleus"], []),
    ("What force pulls objects towards the Earth?", ["gravity"], []),
    ("What do caterpillars turn into?", ["butterfly", "butterflies", "moth", "moths"], []),
    ("What is frozen water called?", ["ice"], []), ("How many years are in a century?", ["100"], []),
    ("How many years are in a decade?", ["10"], []), ("How many weeks are in a year?", ["52"], []),
    ("What shape has three sides?", ["triangle"], ["square", "circle"]),
    ("What is ten percent of two hundred?", ["20"], []),
    ("Which star is closest to the Earth?", ["Sun"], ["Sirius", "Proxima"]),
    ("What is the name of the Earth's natural satellite?", ["Moon"], []),
    ("On which continent is the Sahara Desert?", ["Africa"], ["Asia", "Australia"]),
    ("Which animal is known as the ship of the desert?", ["camel"], []),
    ("What is the main language of Australia?", ["English"], []),
    ("How many minutes are in a quarter of an hour?", ["15"], []),
]

ROMAN = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"), (40, "XL"),
         (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]


def roman(n: int) -> str:
    """`n` (1..3999) in Roman numerals."""
    out = ""
    for value, letters in ROMAN:
        count, n = divmod(n, value)
        out += letters * count
    return out


def _plural_forms(names: list[str]) -> list[str]:
    """Currency names as an answer may write them: each name and its -s plural."""
    return sorted({form for name in names for form in (name, name + "s")})


def _others(table: list[tuple[str, list[str]]], accepted: list[str]) -> list[str]:
    """Every other answer of a table: a wrong answer that names one of them is wrong."""
    return sorted({a for _, answers in table for a in answers} - set(accepted))


# kind: (a table of (key, accepted answers), the question about a key); the other rows' answers are wrong ones
TABLE_KINDS = {
    "author": (BOOKS, 'Who wrote "{}"?'),
    "currency": ([(country, _plural_forms(names)) for country, names in CURRENCIES], "What is the currency of {}?"),
    "language": (LANGUAGES, "What is the main language spoken in {}?"),
    "young": (YOUNG, "What is a baby {} called?"),
}


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
    if kind == "element":
        name, symbol = rng.choice(ELEMENTS)
        names = [name, *ELEMENT_SPELLINGS.get(name, [])]
        if rng.random() < 0.5 and symbol not in WORD_SYMBOLS:
            others = [s for _, s in ELEMENTS if s != symbol and len(s) == 2 and s not in WORD_SYMBOLS]
            return f"What is the chemical symbol for {name}?", [symbol], others, 2
        others = sorted({n for n, _ in ELEMENTS} - set(names))
        return f"Which chemical element has the symbol {symbol}?", names, others, 2
    if kind in TABLE_KINDS:
        table, template = TABLE_KINDS[kind]
        key, accepted = rng.choice(table)
        return template.format(key), accepted, _others(table, accepted), 2
    if kind == "opposite":
        word, opposites = rng.choice(OPPOSITES)
        return f"What is the opposite of \"{word}\"?", opposites, [], 1
    if kind == "plural":
        word, plurals = rng.choice(PLURALS)
        wrong = [word + "s"] if word + "s" not in plurals else []
        return f"What is the plural of \"{word}\"?", plurals, wrong, 2
    if kind == "past_tense":
        verb, past = rng.choice(PAST_TENSES)
        wrong = [verb + ("d" if verb.endswith("e") else "ed")]
        return f"What is the past tense of \"{verb}\"?", past, wrong, 2
    if kind == "trivia":
        question, accepted, rejected = rng.choice(TRIVIA)
        return question, accepted, rejected, 2
    if kind == "roman":
        n = rng.choice([rng.randint(1, 12), rng.randint(13, 50), rng.randint(51, 400)])
        level = 1 if n <= 12 else 2 if n <= 50 else 3
        return f"What number is the Roman numeral {roman(n)}?", [str(n)], [], level
    if kind == "sequence":
        start, step = rng.randint(1, 20), rng.randint(2, 9)
        if rng.random() < 0.25:
            terms = [start * 2 ** i for i in range(4)]
            nxt = start * 16
            level = 3
        else:
            terms = [start + step * i for i in range(4)]
            nxt = start + 4 * step
            level = 1 if step <= 3 else 2
        seq = ", ".join(map(str, terms))
        return f"What number comes next in the sequence {seq}?", [str(nxt)], [], level
    raise ValueError(f"unknown kind {kind!r}")


KINDS = ("add", "subtract", "multiply", "convert", "next_number", "compare", "weekday", "month", "capital",
         "continent", "letter", "element", "author", "currency", "language", "young", "opposite", "plural",
         "past_tense", "trivia", "roman", "sequence")
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
