"""Synthetic multi-agency records with known truth, for tests and quality benchmarks.

Nothing here is real: every name, street and town comes from the short lists below, written for
this module, and every choice is drawn from the ``numpy.random.Generator`` the caller passes, so one
seed gives byte-identical CSV files.

How a dataset is made:

1. **People** (the truth): sex, given and middle name, surname, date of birth and an address, names
   drawn with Zipf-like frequencies so that common names collide as they do in life. A share of
   people are relatives of another person: same surname and address, sometimes the same birthday
   (twins). They are the hard non-matches.
2. **Memberships**: each person is held by one agency, or - with probability ``overlap`` - by two or
   more. An agency holds a person once, unless ``duplicates`` asks for planted duplicate case
   files: then a share of each agency's people get one or more further records there (same
   person, same ``entity_id`` in the truth, each copy damaged on its own).
3. **Records**: each agency copies its people and damages the copy the way its intake desk does
   (``ErrorRates``), formats it the way its system does (``AgencyProfile``: date format, sex
   spelling, case, accents, whitespace, ZIP+4, street-type abbreviations), and leaves fields empty
   (``MissingRates``). Every error is drawn independently per record, so a record can carry several.
4. **Record ids** are random numbers unique within the agency, and each agency's rows are sorted by
   them, so neither an id nor a row position says anything about the person.

Every column of an agency frame is a string; a missing value is the empty string.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "AgencyProfile",
    "CHILD_WELFARE",
    "DEFAULT_AGENCIES",
    "ErrorRates",
    "HOSPITAL",
    "MissingRates",
    "POLICE",
    "RECORD_COLUMNS",
    "SyntheticData",
    "VICTIM_SERVICES",
    "generate_agencies",
    "generate_dataset_files",
]

# ---------------------------------------------------------------------------------------------
# Embedded lists. Order is frequency rank: the first entries are drawn most often.
# ---------------------------------------------------------------------------------------------

_MALE_NAMES = [
    "James",
    "Robert",
    "John",
    "Michael",
    "David",
    "William",
    "Richard",
    "Joseph",
    "Thomas",
    "Christopher",
    "Charles",
    "Daniel",
    "Matthew",
    "Anthony",
    "Mark",
    "Steven",
    "Andrew",
    "Joshua",
    "Kevin",
    "Brian",
    "José",
    "Juan",
    "Luis",
    "Carlos",
    "Jonathan",
    "Nicholas",
    "Benjamin",
    "Samuel",
    "Alexander",
    "Patrick",
    "Edward",
    "Timothy",
    "Jason",
    "Tyler",
    "Aaron",
    "Ethan",
    "Noah",
    "Liam",
    "Mohammed",
    "Ahmed",
    "Omar",
    "Ali",
    "Wei",
    "Minh",
    "Duc",
    "Hung",
    "Łukasz",
    "Piotr",
    "Jürgen",
    "Søren",
    "Björn",
    "François",
    "Zoltán",
    "Dmitri",
    "Ivan",
    "Mateo",
    "Santiago",
    "Diego",
    "Alejandro",
    "Francisco",
    "Jesús",
    "Kwame",
    "Oluwaseun",
    "Tomás",
    "Seán",
    "Raphaël",
    "Andrés",
    "Jean-Pierre",
    "Darnell",
    "Malik",
]

_FEMALE_NAMES = [
    "Mary",
    "Patricia",
    "Jennifer",
    "Linda",
    "Elizabeth",
    "Barbara",
    "Susan",
    "Jessica",
    "Sarah",
    "Karen",
    "Nancy",
    "Margaret",
    "Lisa",
    "Betty",
    "Sandra",
    "Ashley",
    "Katherine",
    "Emily",
    "Michelle",
    "Amanda",
    "Melissa",
    "Deborah",
    "Stephanie",
    "Rebecca",
    "Laura",
    "Maria",
    "Sofía",
    "Guadalupe",
    "Ana",
    "Lucía",
    "Valentina",
    "Camila",
    "Isabella",
    "Victoria",
    "Samantha",
    "Alexandra",
    "Christina",
    "Abigail",
    "Natalie",
    "Josephine",
    "Theresa",
    "Kimberly",
    "Zoë",
    "Chloé",
    "Renée",
    "Anne-Marie",
    "Siobhán",
    "Aoife",
    "Małgorzata",
    "Agnieszka",
    "Zofia",
    "Ingrid",
    "Åsa",
    "Léa",
    "Maëlle",
    "Fatima",
    "Aisha",
    "Mei",
    "Linh",
    "Thảo",
    "Hoa",
    "Priya",
    "Ananya",
    "Nadia",
    "Olga",
    "Tatiana",
    "Keisha",
    "Imani",
    "Destiny",
    "Jasmine",
    "Mariana",
    "Dolores",
    "Beatriz",
]

# Spaces inside a surname are real ("van der Berg"), so this list is split on commas.
_SURNAMES = tuple(
    name.strip()
    for name in [
        "Smith",
        " Johnson",
        " Williams",
        " Brown",
        " Jones",
        " García",
        " Miller",
        " Davis",
        " Rodríguez",
        " Martínez",
        " Hernández",
        " López",
        " González",
        " Wilson",
        " Anderson",
        " Thomas",
        " Taylor",
        " Moore",
        " Jackson",
        " Martin",
        " Lee",
        " Pérez",
        " Thompson",
        " White",
        " Harris",
        " Sánchez",
        " Clark",
        " Ramírez",
        " Lewis",
        " Robinson",
        " Walker",
        " Young",
        " Allen",
        " King",
        " Wright",
        " Scott",
        " Torres",
        " Nguyễn",
        " Hill",
        " Flores",
        " Green",
        " Adams",
        " Nelson",
        " Baker",
        " Hall",
        " Rivera",
        " Campbell",
        " Mitchell",
        " Carter",
        " Roberts",
        " Trần",
        " Lê",
        " Phạm",
        " Kim",
        " Park",
        " Chen",
        " Wang",
        " Li",
        " Zhang",
        " Singh",
        " Patel",
        " Kumar",
        " Khan",
        " Ahmed",
        " Hussain",
        " O'Brien",
        " O'Connor",
        " O'Neill",
        " McDonald",
        " MacLeod",
        " Murphy",
        " Kelly",
        " Sullivan",
        " Byrne",
        " Müller",
        " Schmidt",
        " Schröder",
        " Weiß",
        " Fischer",
        " Kowalski",
        " Nowak",
        " Wiśniewski",
        " Lewandowski",
        " Dvořák",
        " Novák",
        " van der Berg",
        " van Dijk",
        " de Vries",
        " de Jong",
        " Jansen",
        " Johansson",
        " Andersson",
        " Nielsen",
        " Søndergaard",
        " Ivanov",
        " Petrov",
        " Popescu",
        " Kovács",
        " Nagy",
        " Rossi",
        " Russo",
        " Ferrari",
        " Esposito",
        " Bianchi",
        " Dubois",
        " Lefèvre",
        " Moreau",
        " Girard",
        " da Silva",
        " Santos",
        " Oliveira",
        " Pereira",
        " Costa",
        " Okafor",
        " Mensah",
        " Diallo",
        " Traoré",
        " Abdi",
        " Haddad",
        " Khoury",
        " Cohen",
        " Levi",
        " Friedman",
        " D'Angelo",
        " St. Clair",
    ]
)

# Formal name -> the short forms people give at a front desk.
_NICKNAMES: dict[str, tuple[str, ...]] = {
    "Robert": ("Bob", "Rob", "Bobby"),
    "William": ("Bill", "Will", "Billy", "Liam"),
    "James": ("Jim", "Jimmy", "Jamie"),
    "John": ("Jack", "Johnny"),
    "Michael": ("Mike", "Mick", "Mikey"),
    "David": ("Dave", "Davey"),
    "Richard": ("Rick", "Dick", "Rich"),
    "Joseph": ("Joe", "Joey"),
    "Thomas": ("Tom", "Tommy"),
    "Christopher": ("Chris", "Topher"),
    "Charles": ("Charlie", "Chuck"),
    "Daniel": ("Dan", "Danny"),
    "Matthew": ("Matt",),
    "Anthony": ("Tony",),
    "Steven": ("Steve",),
    "Andrew": ("Andy", "Drew"),
    "Joshua": ("Josh",),
    "Jonathan": ("Jon", "Jonny"),
    "Nicholas": ("Nick", "Nicky"),
    "Benjamin": ("Ben", "Benny"),
    "Samuel": ("Sam", "Sammy"),
    "Alexander": ("Alex", "Sasha", "Xander"),
    "Patrick": ("Pat", "Paddy"),
    "Edward": ("Ed", "Eddie", "Ted"),
    "Timothy": ("Tim", "Timmy"),
    "José": ("Pepe", "Chepe"),
    "Francisco": ("Paco", "Pancho"),
    "Alejandro": ("Alex", "Ale"),
    "Dmitri": ("Dima",),
    "Ivan": ("Vanya",),
    "Mohammed": ("Mo",),
    "Elizabeth": ("Liz", "Beth", "Lizzie", "Eliza", "Betsy"),
    "Katherine": ("Kate", "Kathy", "Katie", "Kat"),
    "Margaret": ("Maggie", "Peggy", "Meg"),
    "Patricia": ("Pat", "Patty", "Trish"),
    "Jennifer": ("Jen", "Jenny"),
    "Jessica": ("Jess", "Jessie"),
    "Rebecca": ("Becky", "Becca"),
    "Victoria": ("Vicky", "Tori"),
    "Alexandra": ("Alex", "Sasha", "Lexi"),
    "Samantha": ("Sam", "Sammy"),
    "Christina": ("Chris", "Tina"),
    "Deborah": ("Debbie", "Deb"),
    "Susan": ("Sue", "Suzy"),
    "Abigail": ("Abby",),
    "Kimberly": ("Kim",),
    "Stephanie": ("Steph",),
    "Natalie": ("Nat",),
    "Josephine": ("Jo", "Josie"),
    "Theresa": ("Tess", "Terry"),
    "Isabella": ("Bella", "Izzy"),
    "Barbara": ("Barb", "Babs"),
    "Sandra": ("Sandy",),
    "Amanda": ("Mandy",),
    "Melissa": ("Mel", "Missy"),
    "Anne-Marie": ("Annie", "Marie"),
    "Guadalupe": ("Lupe", "Lupita"),
    "Małgorzata": ("Gosia",),
    "Tatiana": ("Tanya",),
}

_STREETS = [
    "Main",
    "High",
    "Church",
    "Park",
    "Oak",
    "Maple",
    "Cedar",
    "Elm",
    "Pine",
    "Washington",
    "Lincoln",
    "Wattle",
    "Acacia",
    "Banksia",
    "Willow",
    "Birch",
    "Station",
    "Mill",
    "King",
    "Queen",
    "Victoria",
    "George",
    "Albert",
    "Market",
    "Bridge",
    "River",
    "Lake",
    "Hill",
    "Spring",
    "Sunset",
    "Jefferson",
    "Madison",
    "Franklin",
    "Jackson",
    "Highland",
    "Meadow",
    "Orchard",
    "Forest",
    "Prospect",
    "Union",
    "Liberty",
    "Cherry",
    "Walnut",
    "Chestnut",
    "Magnolia",
    "Dogwood",
    "Sycamore",
    "Juniper",
    "Cypress",
    "Harbor",
    "Bayview",
    "Ocean",
    "Railroad",
    "Mission",
    "Peña",
    "Alamo",
    "Laurel",
    "Hawthorn",
    "Ridge",
    "Valley",
]

# (as written in full, as abbreviated); the normaliser maps both to one spelling.
_STREET_TYPES = (
    ("Street", "St"), ("Avenue", "Ave"), ("Road", "Rd"), ("Drive", "Dr"), ("Lane", "Ln"),
    ("Court", "Ct"), ("Place", "Pl"), ("Boulevard", "Blvd"), ("Terrace", "Tce"),
    ("Crescent", "Cres"), ("Way", "Way"),
)  # fmt: skip

# Town -> first of the few ZIP codes it spans.
_TOWNS = {
    "Springfield": 62701, "Riverside": 92501, "Fairview": 37062, "Franklin": 37064,
    "Greenville": 29601, "Bristol": 6010, "Clinton": 20735, "Georgetown": 78626, "Salem": 97301,
    "Madison": 53703, "Oakland": 94601, "Arlington": 22201, "Ashland": 41101,
    "Burlington": 5401, "Chester": 19013, "Dover": 19901, "Hudson": 12534, "Kingston": 12401,
    "Lexington": 40502, "Milton": 2186, "Newport": 2840, "Oxford": 38655, "Auburn": 36830,
    "Dayton": 45402, "Lebanon": 17042, "Marion": 46952, "Jackson": 39201, "Clayton": 30525,
    "Monroe": 71201, "Winchester": 22601, "San José": 95110, "Española": 87532,
    "Cañon City": 81212, "Coeur d'Alene": 83814, "Port Saint Lucie": 34952,
}  # fmt: skip
_ZIPS_PER_TOWN = 5

# Letters that survive Unicode decomposition but that an ASCII-only system writes plainly.
_ASCII_FOLDS = {
    "ß": "ss", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "æ": "ae", "Æ": "AE",
    "œ": "oe", "Œ": "OE", "ı": "i",
}  # fmt: skip


# People are born between these: the oldest are about 95 and the youngest a year old, so that a
# date error that moves a year forward never lands in the future.
_REFERENCE_DATE = np.datetime64("2024-01-01")
_LATEST_BIRTH_YEAR = 2022

RECORD_COLUMNS = (
    "given_name",
    "middle_name",
    "surname",
    "date_of_birth",
    "sex",
    "address",
    "city",
    "postcode",
)
_OPTIONAL_COLUMNS = frozenset({"middle_name", "city"})
_TEXT_COLUMNS = ("given_name", "middle_name", "surname", "address", "city")
_AGENCY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

CaseStyle = Literal["as_is", "upper", "lower", "title", "mixed"]
_CASE_STYLES = ("as_is", "upper", "lower", "title", "mixed")
# How a "mixed" desk types: mostly Title, sometimes all lower or all upper.
_MIXED_CASE_SHARES = {"title": 0.6, "lower": 0.2, "upper": 0.2}

# How a wrong date is wrong: one part wrong, day and month swapped, or year off by one.
_DATE_ERROR_SHARES = (0.45, 0.25, 0.30)
# Which part is wrong when one part is: day, month, year.
_DATE_PART_SHARES = (0.5, 0.25, 0.25)


# ---------------------------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------------------------


def _check_rates(owner: DataclassInstance) -> None:
    for item in dataclasses.fields(owner):
        value = getattr(owner, item.name)
        if isinstance(value, float | int) and not 0.0 <= value <= 1.0:
            raise ValueError(f"{type(owner).__name__}.{item.name} must lie in [0, 1], got {value}")


@dataclass(frozen=True, kw_only=True)
class ErrorRates:
    """Chance, per record, of each content error; each is drawn independently of the others.

    ``nickname`` applies only to given names that have a short form (Robert -> Bob); its rate is
    the share of those records that use one.
    """

    given_name_typo: float = 0.0  # one character inserted, deleted, substituted or transposed
    surname_typo: float = 0.0
    nickname: float = 0.0
    names_swapped: float = 0.0  # given name written as surname and vice versa
    surname_changed: float = 0.0  # hyphenated with another surname, or a different one entirely
    date_of_birth_wrong: float = 0.0  # one part wrong, day/month swapped, or year off by one
    address_moved: float = 0.0  # a different address entirely: street, town and ZIP
    postcode_typo: float = 0.0  # one digit of the ZIP wrong
    sex_wrong: float = 0.0  # male and female exchanged

    def __post_init__(self) -> None:
        _check_rates(self)


@dataclass(frozen=True, kw_only=True)
class MissingRates:
    """Chance, per record, that a field is left empty."""

    given_name: float = 0.0
    middle_name: float = 0.0
    surname: float = 0.0
    date_of_birth: float = 0.0
    sex: float = 0.0
    address: float = 0.0
    city: float = 0.0
    postcode: float = 0.0

    def __post_init__(self) -> None:
        _check_rates(self)


@dataclass(frozen=True, kw_only=True)
class AgencyProfile:
    """One agency: how it writes records and how often its records are wrong.

    The defaults are a perfectly clean agency (ISO dates, M/F/X, names as the person spells them),
    so a test can switch on one quirk at a time.
    """

    name: str  # also the file name and the ``source`` in the truth
    record_id_prefix: str
    date_format: str = "%Y-%m-%d"  # strftime format; must contain %Y, %m and %d
    sex_spellings: tuple[str, str, str] = ("M", "F", "X")  # male, female, other
    case: CaseStyle = "as_is"
    accents_dropped: float = 0.0  # share of records written without diacritics (José -> Jose)
    extra_whitespace: float = 0.0  # per text field: a stray leading, trailing or doubled space
    zip_plus4: float = 0.0  # share of postcodes written as ZIP+4 (12345-6789)
    street_type_abbreviated: float = 0.0  # share of addresses with "St" for "Street"
    middle_initial_only: float = 0.0  # share of middle names cut to their initial
    size: float = 1.0  # relative weight when choosing which agencies hold a person
    columns: tuple[str, ...] = RECORD_COLUMNS
    errors: ErrorRates = ErrorRates()
    missing: MissingRates = MissingRates()

    def __post_init__(self) -> None:
        if not _AGENCY_NAME.match(self.name) or self.name == "truth":
            raise ValueError(f"agency name {self.name!r}: lower-case letters, digits and _, and not 'truth'")
        if not all(part in self.date_format for part in ("%Y", "%m", "%d")):
            raise ValueError(f"date_format of {self.name!r} must contain %Y, %m and %d")
        if self.case not in _CASE_STYLES:
            raise ValueError(f"case of {self.name!r} must be one of {_CASE_STYLES}")
        if len(self.sex_spellings) != 3:
            raise ValueError(f"sex_spellings of {self.name!r} must name male, female and other")
        if not self.size > 0:
            raise ValueError(f"size of {self.name!r} must be positive")
        unknown = set(self.columns) - set(RECORD_COLUMNS)
        lacking = set(RECORD_COLUMNS) - _OPTIONAL_COLUMNS - set(self.columns)
        if unknown or lacking or len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns of {self.name!r}: unknown {sorted(unknown)}, lacking {sorted(lacking)}")
        for rate in ("accents_dropped", "extra_whitespace", "zip_plus4", "street_type_abbreviated",
                     "middle_initial_only"):  # fmt: skip
            value = getattr(self, rate)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{rate} of {self.name!r} must lie in [0, 1], got {value}")


# Police: an old ASCII-only system in capitals, US dates, ZIP+4 from the address validator; people
# give street names and aliases, and many are transient, so addresses go stale.
POLICE = AgencyProfile(
    name="police",
    record_id_prefix="PD-",
    date_format="%m/%d/%Y",
    sex_spellings=("M", "F", "X"),
    case="upper",
    accents_dropped=1.0,
    extra_whitespace=0.05,
    zip_plus4=0.4,
    street_type_abbreviated=0.9,
    middle_initial_only=0.3,
    size=1.0,
    errors=ErrorRates(
        given_name_typo=0.10,
        surname_typo=0.10,
        nickname=0.25,
        names_swapped=0.04,
        surname_changed=0.05,
        date_of_birth_wrong=0.10,
        address_moved=0.30,
        postcode_typo=0.03,
        sex_wrong=0.01,
    ),
    missing=MissingRates(
        given_name=0.01,
        middle_name=0.40,
        surname=0.005,
        date_of_birth=0.04,
        sex=0.02,
        address=0.12,
        city=0.12,
        postcode=0.15,
    ),
)

# Child welfare: a modern case system, ISO dates, Title case; children change surname with a
# step-parent and move between placements.
CHILD_WELFARE = AgencyProfile(
    name="child_welfare",
    record_id_prefix="CW",
    date_format="%Y-%m-%d",
    sex_spellings=("male", "female", "other"),
    case="title",
    accents_dropped=0.4,
    extra_whitespace=0.10,
    zip_plus4=0.0,
    street_type_abbreviated=0.3,
    middle_initial_only=0.0,
    size=0.8,
    errors=ErrorRates(
        given_name_typo=0.08,
        surname_typo=0.08,
        nickname=0.10,
        names_swapped=0.02,
        surname_changed=0.10,
        date_of_birth_wrong=0.06,
        address_moved=0.35,
        postcode_typo=0.02,
        sex_wrong=0.01,
    ),
    missing=MissingRates(
        given_name=0.0,
        middle_name=0.30,
        surname=0.01,
        date_of_birth=0.02,
        sex=0.03,
        address=0.08,
        city=0.10,
        postcode=0.10,
    ),
)

# Victim services: intake by whoever is on shift, compact dates, the person's preferred name, and
# for safety usually no address and often no date of birth.
VICTIM_SERVICES = AgencyProfile(
    name="victim_services",
    record_id_prefix="VS-",
    date_format="%Y%m%d",
    sex_spellings=("Man", "Woman", "Non-binary"),
    case="mixed",
    accents_dropped=0.0,
    extra_whitespace=0.15,
    zip_plus4=0.1,
    street_type_abbreviated=0.5,
    middle_initial_only=0.2,
    size=0.6,
    errors=ErrorRates(
        given_name_typo=0.12,
        surname_typo=0.12,
        nickname=0.40,
        names_swapped=0.06,
        surname_changed=0.08,
        date_of_birth_wrong=0.12,
        address_moved=0.40,
        postcode_typo=0.04,
        sex_wrong=0.02,
    ),
    missing=MissingRates(
        given_name=0.02,
        middle_name=0.85,
        surname=0.08,
        date_of_birth=0.30,
        sex=0.10,
        address=0.80,
        city=0.60,
        postcode=0.65,
    ),
)

# Hospital: not in the default set; add it for a four-agency run.
HOSPITAL = AgencyProfile(
    name="hospital",
    record_id_prefix="MRN",
    date_format="%m/%d/%Y",
    sex_spellings=("Male", "Female", "Intersex"),
    case="title",
    accents_dropped=0.7,
    extra_whitespace=0.05,
    zip_plus4=0.2,
    street_type_abbreviated=0.6,
    middle_initial_only=0.5,
    size=0.9,
    errors=ErrorRates(
        given_name_typo=0.06,
        surname_typo=0.06,
        nickname=0.08,
        names_swapped=0.02,
        surname_changed=0.04,
        date_of_birth_wrong=0.05,
        address_moved=0.25,
        postcode_typo=0.02,
        sex_wrong=0.005,
    ),
    missing=MissingRates(
        given_name=0.01,
        middle_name=0.50,
        surname=0.01,
        date_of_birth=0.01,
        sex=0.01,
        address=0.10,
        city=0.10,
        postcode=0.10,
    ),
)

DEFAULT_AGENCIES = (POLICE, CHILD_WELFARE, VICTIM_SERVICES)


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SyntheticData:
    """Agency frames and the truth that joins them.

    ``frames``: agency name -> its records (``rec_id`` then the profile's columns, all strings).
    ``truth``: one row per record: ``record_id``, ``source`` (agency name), ``entity_id``.
    ``people``: the clean value of every person, keyed by ``entity_id``, with ``household_id``
    shared by relatives (same surname and address): for measuring which errors defeat a matcher.
    """

    frames: dict[str, pl.DataFrame]
    truth: pl.DataFrame
    people: pl.DataFrame

    def write(self, directory: str | Path) -> dict[str, Path]:
        """Write ``<agency>.csv`` for each agency and ``truth.csv``; return name -> path."""
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for name, frame in [*self.frames.items(), ("truth", self.truth)]:
            paths[name] = folder / f"{name}.csv"
            frame.write_csv(paths[name])
        return paths


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def generate_agencies(
    n_people: int,
    agencies: Sequence[AgencyProfile] | None = None,
    *,
    rng: np.random.Generator,
    overlap: float = 0.5,
    relatives: float = 0.2,
    duplicates: float = 0.0,
) -> SyntheticData:
    """Records of ``n_people`` synthetic people as held by ``agencies`` (default: the three).

    ``overlap`` is the share of people held by more than one agency; ``relatives`` the share who
    live with (and share a surname with) another person; ``duplicates`` the share of each agency's
    people it holds under more than one case file (one more, or with falling odds several more).
    Every random choice comes from ``rng``; with no duplicates, the same draws as before.
    """
    profiles = tuple(DEFAULT_AGENCIES if agencies is None else agencies)
    _check_arguments(n_people, profiles, overlap, relatives)
    if not 0.0 <= duplicates <= 1.0:
        raise ValueError(f"duplicates must lie in [0, 1], got {duplicates}")
    people = _people(n_people, relatives, rng)
    membership = _memberships(n_people, np.array([p.size for p in profiles]), overlap, rng)
    frames: dict[str, pl.DataFrame] = {}
    truth_parts = []
    for column, profile in enumerate(profiles):
        held = people[np.flatnonzero(membership[:, column])]
        if duplicates > 0:
            held = _with_duplicate_files(held, duplicates, rng)
        records = _agency_records(held, profile, rng)
        record_ids = _record_ids(records.height, profile.record_id_prefix, rng)
        records = records.with_columns(rec_id=record_ids).sort("rec_id")
        frames[profile.name] = records.select("rec_id", *profile.columns)
        truth_parts.append(
            records.select(
                pl.col("rec_id").alias("record_id"),
                pl.lit(profile.name).alias("source"),
                pl.col("entity_id"),
            )
        )
    return SyntheticData(frames=frames, truth=pl.concat(truth_parts), people=_public_people(people))


def generate_dataset_files(
    directory: str | Path,
    n_people: int,
    seed: int,
    *,
    agencies: Sequence[AgencyProfile] | None = None,
    overlap: float = 0.5,
    relatives: float = 0.2,
    duplicates: float = 0.0,
) -> dict[str, Path]:
    """Generate with ``numpy.random.default_rng(seed)`` and write the CSV files to ``directory``.

    Returns agency name -> ``<agency>.csv`` and ``"truth"`` -> ``truth.csv``.
    """
    rng = np.random.default_rng(seed)
    data = generate_agencies(n_people, agencies, rng=rng, overlap=overlap, relatives=relatives, duplicates=duplicates)
    return data.write(directory)


def _check_arguments(n_people: int, profiles: tuple[AgencyProfile, ...], overlap: float, relatives: float) -> None:
    if n_people < 0:
        raise ValueError(f"n_people must not be negative, got {n_people}")
    if not profiles:
        raise ValueError("at least one agency is needed")
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise ValueError(f"agency names must be unique, got {names}")
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must lie in [0, 1], got {overlap}")
    if overlap > 0 and len(profiles) < 2:
        raise ValueError("overlap needs at least two agencies")
    if not 0.0 <= relatives <= 1.0:
        raise ValueError(f"relatives must lie in [0, 1], got {relatives}")


# ---------------------------------------------------------------------------------------------
# People
# ---------------------------------------------------------------------------------------------
# Values are drawn as indices into the lists and turned into strings by one gather at the end:
# polars builds a string column from numpy strings slowly, and from a gather quickly.

_GIVEN_NAMES = pl.Series(_MALE_NAMES + _FEMALE_NAMES, dtype=pl.String)
_SURNAME_SERIES = pl.Series(_SURNAMES, dtype=pl.String)
_STREET_SERIES = pl.Series(_STREETS, dtype=pl.String)
_TOWN_SERIES = pl.Series(list(_TOWNS), dtype=pl.String)
_FIRST_ZIP = np.array(list(_TOWNS.values()))
_SEXES = pl.Series(["M", "F", "X"], dtype=pl.String)
_LETTER_SERIES = pl.Series(list("abcdefghijklmnopqrstuvwxyz"), dtype=pl.String)


def _zipf_indices(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Indices into a list in frequency order; the offset keeps the commonest to a few per cent."""
    weights = 1.0 / (np.arange(count) + 8.0)
    return rng.choice(count, size=size, p=weights / weights.sum())


def _given_name_indices(sex: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices into ``_GIVEN_NAMES``: male names first, then female ones."""
    male = _zipf_indices(len(_MALE_NAMES), sex.size, rng)
    female = len(_MALE_NAMES) + _zipf_indices(len(_FEMALE_NAMES), sex.size, rng)
    # A person of neither sex gets a name from either list.
    either = rng.random(sex.size) < 0.5
    return np.where((sex == 0) | ((sex == 2) & either), male, female)


def _next_given_name(index: np.ndarray) -> np.ndarray:
    """The next name in the same (male or female) list."""
    n_male, n_female = len(_MALE_NAMES), len(_FEMALE_NAMES)
    return np.where(index < n_male, (index + 1) % n_male, n_male + (index - n_male + 1) % n_female)


def _zip_text(zip_code: np.ndarray) -> pl.Series:
    return pl.Series(zip_code, dtype=pl.Int64).cast(pl.String).str.zfill(5)


def _addresses(size: int, rng: np.random.Generator) -> pl.DataFrame:
    """Address parts of ``size`` fresh addresses."""
    town = rng.integers(0, len(_TOWNS), size)
    zip_code = _FIRST_ZIP[town] + rng.integers(0, _ZIPS_PER_TOWN, size)
    unit = np.where(rng.random(size) < 0.12, rng.integers(1, 40, size), 0)
    # Low house numbers are commoner than high ones.
    house_number = np.minimum(rng.geometric(1 / 60, size), 9999)
    street = _zipf_indices(len(_STREETS), size, rng)
    street_type = rng.integers(0, len(_STREET_TYPES), size)
    zip4 = rng.integers(0, 10_000, size)
    return pl.DataFrame(
        {
            "unit": pl.Series(unit, dtype=pl.Int64),
            "house_number": pl.Series(house_number, dtype=pl.Int64),
            "street": _STREET_SERIES.gather(street),
            "street_type": pl.Series(street_type, dtype=pl.Int64),
            "city": _TOWN_SERIES.gather(town),
            "postcode": _zip_text(zip_code),
            "zip4": pl.Series(zip4, dtype=pl.Int64).cast(pl.String).str.zfill(4),
        }
    )


_ADDRESS_PARTS = ("unit", "house_number", "street", "street_type", "city", "postcode", "zip4")
_ADDRESS_IDENTITY = ("unit", "house_number", "street", "street_type", "city")


def _birth_dates(size: int, rng: np.random.Generator) -> np.ndarray:
    # Ages skew young (victims and children), with a long tail to the mid-nineties.
    age_years = np.clip(1.0 + rng.gamma(2.2, 11.0, size), 1.0, 95.0)
    days = np.ceil(age_years * 365.25).astype("timedelta64[D]")
    return _REFERENCE_DATE - days


def _people(n_people: int, relatives: float, rng: np.random.Generator) -> pl.DataFrame:
    """The clean truth: one row per person, address kept in parts, birth date as year/month/day."""
    sex = np.where(rng.random(n_people) < 0.01, 2, (rng.random(n_people) < 0.5).astype(np.int64))
    given = _given_name_indices(sex, rng)
    middle = np.where(rng.random(n_people) < 0.6, _given_name_indices(sex, rng), -1)
    surname = _zipf_indices(len(_SURNAMES), n_people, rng)
    born = _birth_dates(n_people, rng)
    address = _addresses(n_people, rng)

    # Relatives take surname and address from a household head who is no relative; some are
    # twins, with the head's birthday. A relative's given name is never the head's.
    household = np.arange(n_people)
    is_relative = rng.random(n_people) < relatives
    heads = np.flatnonzero(~is_relative)
    related = np.flatnonzero(is_relative) if heads.size else heads  # nobody to live with
    head_of = heads[rng.integers(0, max(heads.size, 1), related.size)]
    twin = rng.random(related.size) < 0.15
    household[related] = head_of
    surname[related] = surname[head_of]
    born[related[twin]] = born[head_of[twin]]
    same_name = given[related] == given[head_of]
    given[related] = np.where(same_name, _next_given_name(given[related]), given[related])
    address = _copy_rows(address, related, head_of)

    dates = pl.Series(born).cast(pl.Date)
    no_name = pl.repeat("", n_people, eager=True, dtype=pl.String)
    return pl.DataFrame(
        {
            "entity_id": pl.Series(np.arange(n_people), dtype=pl.Int64),
            "household_id": pl.Series(household, dtype=pl.Int64),
            "given_name": _GIVEN_NAMES.gather(given),
            "middle_name": _where(middle >= 0, _GIVEN_NAMES.gather(np.maximum(middle, 0)), no_name),
            "surname": _SURNAME_SERIES.gather(surname),
            "sex": _SEXES.gather(sex),
            "year": dates.dt.year().cast(pl.Int64),
            "month": dates.dt.month().cast(pl.Int64),
            "day": dates.dt.day().cast(pl.Int64),
        }
    ).hstack(address)


def _copy_rows(frame: pl.DataFrame, targets: np.ndarray, sources: np.ndarray) -> pl.DataFrame:
    """``frame`` with row ``targets[i]`` replaced by row ``sources[i]``."""
    index = np.arange(frame.height)
    index[targets] = sources
    return frame[index]


def _address_text(parts: pl.DataFrame, abbreviated: np.ndarray) -> pl.Series:
    """ "Apt 4, 12 Wattle Street", with "St" for "Street" in the abbreviated rows."""
    full = pl.Series([full for full, _ in _STREET_TYPES], dtype=pl.String)
    short = pl.Series([short for _, short in _STREET_TYPES], dtype=pl.String)
    types = parts["street_type"].to_numpy()
    street_type = _where(abbreviated, short.gather(types), full.gather(types))
    unit = pl.col("unit")
    return (
        parts.with_columns(street_type=street_type)
        .select(
            pl.concat_str(
                pl.when(unit > 0).then(pl.format("Apt {}, ", unit)).otherwise(pl.lit("")),
                pl.col("house_number").cast(pl.String),
                pl.lit(" "),
                pl.col("street"),
                pl.lit(" "),
                pl.col("street_type"),
            )
        )
        .to_series()
    )


def _public_people(people: pl.DataFrame) -> pl.DataFrame:
    return people.select(
        "entity_id",
        "household_id",
        "given_name",
        "middle_name",
        "surname",
        pl.date("year", "month", "day").alias("date_of_birth"),
        "sex",
        _address_text(people, np.zeros(people.height, dtype=bool)).alias("address"),
        "city",
        "postcode",
        "zip4",
    )


# ---------------------------------------------------------------------------------------------
# Memberships and record ids
# ---------------------------------------------------------------------------------------------


def _memberships(n_people: int, sizes: np.ndarray, overlap: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean (person, agency) matrix: one agency each, two or more for a share ``overlap``."""
    n_agencies = sizes.size
    shared = rng.random(n_people) < overlap
    count = np.ones(n_people, dtype=np.int64)
    if n_agencies > 1:
        # Among shared people, each further agency is half as likely as the one before.
        weights = 0.5 ** np.arange(n_agencies - 1)
        further = rng.choice(n_agencies - 1, size=n_people, p=weights / weights.sum())
        count += np.where(shared, 1 + further, 0)
    # Weighted sampling without replacement (Gumbel top-k): the k largest keys win.
    keys = np.log(sizes / sizes.sum()) + rng.gumbel(size=(n_people, n_agencies))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    return rank < count[:, None]


def _with_duplicate_files(held: pl.DataFrame, share: float, rng: np.random.Generator) -> pl.DataFrame:
    """``held`` plus further copies of a ``share`` of its people: 1 more each, 2 or more less often."""
    chosen = np.flatnonzero(rng.random(held.height) < share)
    copies = rng.geometric(0.7, chosen.size)
    return held[np.concatenate([np.arange(held.height), np.repeat(chosen, copies)])]


def _record_ids(size: int, prefix: str, rng: np.random.Generator) -> pl.Series:
    # Random and unique within the agency, from a space much larger than the agency, so an id
    # says nothing about the person or about the person's ids elsewhere.
    digits = max(7, len(str(size * 50)))
    numbers = pl.Series(rng.choice(10**digits, size=size, replace=False), dtype=pl.Int64)
    return (prefix + numbers.cast(pl.String).str.zfill(digits)).alias("rec_id")


# ---------------------------------------------------------------------------------------------
# Records: content errors
# ---------------------------------------------------------------------------------------------
# The string-rewriting errors pick their rows first and compute new values for those rows only.


def _where(mask: np.ndarray, chosen: pl.Series, otherwise: pl.Series) -> pl.Series:
    return chosen.zip_with(pl.Series(mask, dtype=pl.Boolean), otherwise)


def _replaced(values: pl.Series, rows: np.ndarray, new_values: pl.Series) -> pl.Series:
    if rows.size == 0:
        return values
    return values.clone().scatter(rows, new_values)


def _agency_records(people: pl.DataFrame, profile: AgencyProfile, rng: np.random.Generator) -> pl.DataFrame:
    """The records ``profile`` holds about ``people``: damaged, formatted, with gaps."""
    size = people.height
    errors = profile.errors

    def drawn(rate: float) -> np.ndarray:
        return rng.random(size) < rate

    def rows(rate: float) -> np.ndarray:
        return np.flatnonzero(drawn(rate))

    given = _with_nicknames(people["given_name"], drawn(errors.nickname), rng)
    surname = _with_changed_surnames(people["surname"], rows(errors.surname_changed), rng)
    given = _with_typos(given, rows(errors.given_name_typo), rng)
    surname = _with_typos(surname, rows(errors.surname_typo), rng)
    swapped = drawn(errors.names_swapped)
    given, surname = _where(swapped, surname, given), _where(swapped, given, surname)
    middle = people["middle_name"]
    middle = _where(drawn(profile.middle_initial_only), middle.str.slice(0, 1), middle)

    year, month, day = _with_wrong_dates(
        people["year"].to_numpy(), people["month"].to_numpy(), people["day"].to_numpy(),
        drawn(errors.date_of_birth_wrong), rng,
    )  # fmt: skip
    sex = _with_wrong_sex(people["sex"], drawn(errors.sex_wrong))

    address = _with_moves(people.select(_ADDRESS_PARTS), rows(errors.address_moved), rng)
    postcode = _with_postcode_typos(address["postcode"], rows(errors.postcode_typo), rng)
    postcode = _where(drawn(profile.zip_plus4), postcode + "-" + address["zip4"], postcode)
    street = _address_text(address, drawn(profile.street_type_abbreviated))

    records = pl.DataFrame(
        {
            "entity_id": people["entity_id"],
            "given_name": given,
            "middle_name": middle,
            "surname": surname,
            "year": pl.Series(year, dtype=pl.Int64),
            "month": pl.Series(month, dtype=pl.Int64),
            "day": pl.Series(day, dtype=pl.Int64),
            "sex": sex,
            "address": street,
            "city": address["city"],
            "postcode": postcode,
        }
    )
    return _formatted(records, profile, rng)


def _with_nicknames(given: pl.Series, chosen: np.ndarray, rng: np.random.Generator) -> pl.Series:
    """Given names, a short form (Robert -> Bob) in the chosen rows whose name has one."""
    pick = pl.Series(rng.random(len(given)))
    counts = given.replace_strict({name: len(short) for name, short in _NICKNAMES.items()}, default=0, return_dtype=pl.Int64)
    index = (pick * counts).floor().cast(pl.Int64)
    short_forms = {f"{name}|{i}": short for name, shorts in _NICKNAMES.items() for i, short in enumerate(shorts)}
    nickname = (given + "|" + index.cast(pl.String)).replace_strict(short_forms, default=None, return_dtype=pl.String)
    return _where(chosen & (counts > 0).to_numpy(), nickname, given)


def _with_changed_surnames(surname: pl.Series, rows: np.ndarray, rng: np.random.Generator) -> pl.Series:
    """Surnames, hyphenated with another (Smith-Okafor) or replaced by it in ``rows``."""
    other = _zipf_indices(len(_SURNAMES), rows.size, rng)
    hyphenated = rng.random(rows.size) < 0.5
    own = surname.gather(rows)
    # Another surname must be another: the same one would be no change at all.
    same = (_SURNAME_SERIES.gather(other) == own).to_numpy()
    other_name = _SURNAME_SERIES.gather(np.where(same, (other + 1) % len(_SURNAMES), other))
    return _replaced(surname, rows, _where(hyphenated, own + "-" + other_name, other_name))


def _folded_char(char: pl.Expr) -> pl.Expr:
    out = char.str.normalize("NFKD").str.replace_all(r"\p{M}", "").str.to_lowercase()
    return out.str.replace_many(list(_ASCII_FOLDS), list(_ASCII_FOLDS.values()))


def _with_typos(values: pl.Series, rows: np.ndarray, rng: np.random.Generator) -> pl.Series:
    """Values with one keying error in ``rows``.

    The error is an insertion, deletion, substitution or transposition of letters, and always
    changes the value as a normaliser sees it: deleting the hyphen of Anne-Marie or substituting
    the e of José with an é would not, so such draws become an insertion instead.
    """
    letter = rng.integers(0, 26, rows.size)
    frame = pl.DataFrame(
        {
            "text": values.gather(rows),
            # 0 insert, 1 delete, 2 substitute, 3 transpose
            "kind": pl.Series(rng.integers(0, 4, rows.size), dtype=pl.Int64),
            "spot": pl.Series(rng.random(rows.size), dtype=pl.Float64),
            "letter": _LETTER_SERIES.gather(letter),
            "other_letter": _LETTER_SERIES.gather((letter + 1) % 26),
        }
    )
    text, spot, kind = pl.col("text"), pl.col("spot"), pl.col("kind")
    length = text.str.len_chars().cast(pl.Int64)

    def char(at: pl.Expr) -> pl.Expr:
        return text.str.slice(at, 1)

    def is_letter(char_expr: pl.Expr) -> pl.Expr:
        return char_expr.str.contains(r"^\p{L}$")

    def cased_like(letter_expr: pl.Expr, neighbour: pl.Expr) -> pl.Expr:
        upper = neighbour != neighbour.str.to_lowercase()
        return pl.when(upper).then(letter_expr.str.to_uppercase()).otherwise(letter_expr)

    frame = frame.with_columns(
        at=(spot * length).floor().cast(pl.Int64),  # the character deleted or substituted
        pair=(spot * (length - 1)).floor().cast(pl.Int64),  # the first of the two transposed
        gap=(spot * (length + 1)).floor().cast(pl.Int64),  # insert before this character
    )
    at, pair, gap = pl.col("at"), pl.col("pair"), pl.col("gap")
    first, second = _folded_char(char(pair)), _folded_char(char(pair + 1))
    # Letters that fold alike, or to two letters (ß: ss), could swap places unseen.
    transposable = (
        (length >= 2)
        & is_letter(char(pair))
        & is_letter(char(pair + 1))
        & (first != second)
        & (first.str.len_chars() == 1)
        & (second.str.len_chars() == 1)
    )
    frame = frame.with_columns(
        kind=pl.when((kind == 1) & ((length < 2) | ~is_letter(char(at))))
        .then(0)
        .when((kind == 2) & ~is_letter(char(at)))
        .then(0)
        .when((kind == 3) & ~transposable)
        .then(0)
        .otherwise(kind)
    )
    letter_expr = pl.col("letter")
    substitute = pl.when(letter_expr == _folded_char(char(at))).then(pl.col("other_letter")).otherwise(letter_expr)
    inserted = cased_like(letter_expr, char(pl.when(gap > 0).then(gap - 1).otherwise(0)))
    head, tail = text.str.slice(0, at), text.str.slice(at + 1)
    typed = frame.select(
        pl.when(kind == 0)
        .then(pl.concat_str(text.str.slice(0, gap), inserted, text.str.slice(gap)))
        .when(kind == 1)
        .then(pl.concat_str(head, tail))
        .when(kind == 2)
        .then(pl.concat_str(head, cased_like(substitute, char(at)), tail))
        .otherwise(pl.concat_str(text.str.slice(0, pair), char(pair + 1), char(pair), text.str.slice(pair + 2)))
    ).to_series()
    return _replaced(values, rows, typed)


def _days_in_month(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    lengths = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
    days: np.ndarray = lengths[month - 1] + ((month == 2) & leap)
    return days


def _with_wrong_dates(
    year: np.ndarray,
    month: np.ndarray,
    day: np.ndarray,
    chosen: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dates with one error in the chosen rows; every result is a valid, different, past date.

    The error is one part wrong, day and month swapped (possible only while the day is 12 or
    less and differs from the month; otherwise the day is wrong), or the year off by one. A
    29 February birthday moves its year by a multiple of four, the nearest years it exists in.
    """
    size = year.size
    how = rng.choice(3, size=size, p=_DATE_ERROR_SHARES)
    part = rng.choice(3, size=size, p=_DATE_PART_SHARES)
    day_pick = rng.random(size)
    month_keys = rng.random((size, 12))
    year_step = rng.integers(2, 11, size)
    direction = rng.choice(np.array([-1, 1]), size=size)

    swappable = (day <= 12) & (day != month)
    swap = (how == 1) & swappable
    off_by_one = how == 2
    one_part = ~swap & ~off_by_one
    wrong_day = one_part & ((part == 0) | (how == 1))
    wrong_month = one_part & (part == 1) & ~wrong_day
    wrong_year = (one_part & (part == 2) & ~wrong_day) | off_by_one

    # Another day of the same month: drawn among the others.
    other_day = 1 + np.floor(day_pick * (_days_in_month(year, month) - 1)).astype(np.int64)
    other_day += other_day >= day
    # Another month in which the day exists.
    months = np.arange(1, 13)
    fits = day[:, None] <= _days_in_month(year[:, None], months[None, :])
    fits &= months[None, :] != month[:, None]
    other_month = 1 + np.argmax(np.where(fits, month_keys, -1.0), axis=1)
    # Another year: one away, or two to ten; never past the latest birth year.
    step = np.where(off_by_one, 1, year_step)
    leap_day = (month == 2) & (day == 29)
    step = np.where(leap_day, 4 * np.maximum(1, np.round(step / 4)).astype(np.int64), step)
    direction = np.where(year + step > _LATEST_BIRTH_YEAR + 1, -1, direction)
    other_year = year + direction * step

    new_year = np.where(chosen & wrong_year, other_year, year)
    new_month = np.where(chosen & wrong_month, other_month, month)
    new_day = np.where(chosen & wrong_day, other_day, day)
    new_month = np.where(chosen & swap, day, new_month)
    new_day = np.where(chosen & swap, month, new_day)
    return new_year, new_month, new_day


def _with_wrong_sex(sex: pl.Series, chosen: np.ndarray) -> pl.Series:
    exchanged = sex.replace_strict({"M": "F", "F": "M", "X": "X"}, return_dtype=pl.String)
    return _where(chosen, exchanged, sex)


def _with_moves(parts: pl.DataFrame, rows: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    """Address parts, a fresh address in ``rows`` (never the same as the old one)."""
    fresh = _addresses(rows.size, rng)
    old = parts[rows]
    same = fresh.select(pl.all_horizontal([fresh[name] == old[name] for name in _ADDRESS_IDENTITY]))
    fresh = fresh.with_columns(pl.col("house_number") + same.to_series().cast(pl.Int64))
    return pl.DataFrame([_replaced(parts[name], rows, fresh[name]) for name in _ADDRESS_PARTS])


def _with_postcode_typos(postcode: pl.Series, rows: np.ndarray, rng: np.random.Generator) -> pl.Series:
    """Five-digit ZIPs, one digit wrong in ``rows``."""
    frame = pl.DataFrame(
        {
            "zip": postcode.gather(rows),
            "at": pl.Series(rng.integers(0, 5, rows.size), dtype=pl.Int64),
            "shift": pl.Series(rng.integers(1, 10, rows.size), dtype=pl.Int64),
        }
    )
    zip_code, at = pl.col("zip"), pl.col("at")
    digit = ((zip_code.str.slice(at, 1).cast(pl.Int64) + pl.col("shift")) % 10).cast(pl.String)
    typed = frame.select(pl.concat_str(zip_code.str.slice(0, at), digit, zip_code.str.slice(at + 1)))
    return _replaced(postcode, rows, typed.to_series())


# ---------------------------------------------------------------------------------------------
# Records: how each agency writes them
# ---------------------------------------------------------------------------------------------
# A quirk that every record or no record has is applied directly, not through a per-row branch:
# polars evaluates every branch of a when/then for every row.


def _ascii(expr: pl.Expr) -> pl.Expr:
    out = expr.str.normalize("NFKD").str.replace_all(r"\p{M}", "")
    return out.str.replace_many(list(_ASCII_FOLDS), list(_ASCII_FOLDS.values()))


_CASED = {
    "upper": lambda expr: expr.str.to_uppercase(),
    "lower": lambda expr: expr.str.to_lowercase(),
    "title": lambda expr: expr.str.to_titlecase(),
}


def _written(column: str, profile: AgencyProfile, plain: np.ndarray, case: np.ndarray | None) -> pl.Expr:
    """The text column with ``profile``'s accents and case."""
    expr = pl.col(column)
    if plain.all():
        expr = _ascii(expr)
    elif plain.any():
        expr = pl.when(pl.col("plain")).then(_ascii(expr)).otherwise(expr)
    if case is not None:  # a "mixed" desk: each record in its own case
        expr = (
            pl.when(pl.col("case") == 0)
            .then(_CASED["upper"](expr))
            .when(pl.col("case") == 1)
            .then(_CASED["lower"](expr))
            .otherwise(_CASED["title"](expr))
        )
    elif profile.case != "as_is":
        expr = _CASED[profile.case](expr)
    return expr.alias(column)


def _spaced(column: str) -> pl.Expr:
    """The text column with a stray space where its ``space_`` control says so."""
    value, how = pl.col(column), pl.col(f"space_{column}")
    doubled = value.str.replace(" ", "  ", literal=True)
    inner = pl.when(value.str.contains(" ", literal=True)).then(doubled).otherwise(value + " ")
    spaced = pl.when(how == 1).then(" " + value).when(how == 2).then(value + "  ").otherwise(inner)
    return pl.when((how > 0) & (value != "")).then(spaced).otherwise(value).alias(column)


def _formatted(records: pl.DataFrame, profile: AgencyProfile, rng: np.random.Generator) -> pl.DataFrame:
    """Records as ``profile``'s system writes them: entity_id and every record column as text."""
    size = records.height
    plain = rng.random(size) < profile.accents_dropped
    controls: dict[str, np.ndarray] = {"plain": plain}
    case = None
    if profile.case == "mixed":
        shares = np.array([_MIXED_CASE_SHARES[style] for style in ("upper", "lower", "title")])
        case = rng.choice(3, size=size, p=shares / shares.sum())
        controls["case"] = case
    for column in _TEXT_COLUMNS:
        # 0: none; 1: a leading space; 2: two trailing; 3: an inner space doubled.
        spaced = rng.random(size) < profile.extra_whitespace
        controls[f"space_{column}"] = np.where(spaced, rng.integers(1, 4, size), 0)
    blank = {column: rng.random(size) < getattr(profile.missing, column) for column in RECORD_COLUMNS}
    male, female, other = profile.sex_spellings

    frame = records.with_columns(
        pl.Series(name, values, dtype=pl.Boolean if values.dtype == bool else pl.Int64) for name, values in controls.items()
    )
    frame = frame.with_columns(
        *[_written(column, profile, plain, case) for column in _TEXT_COLUMNS],
        pl.date("year", "month", "day").dt.strftime(profile.date_format).alias("date_of_birth"),
        pl.col("sex").replace_strict({"M": male, "F": female, "X": other}, return_dtype=pl.String),
    )
    if profile.extra_whitespace > 0:
        frame = frame.with_columns(_spaced(column) for column in _TEXT_COLUMNS)
    written = frame.select("entity_id", *RECORD_COLUMNS)
    return written.with_columns(
        pl.when(pl.Series(mask, dtype=pl.Boolean)).then(pl.lit("")).otherwise(column).alias(column)
        for column, mask in blank.items()
    )
