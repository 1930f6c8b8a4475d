"""The scene-classification answer rule (onellm.evaluation.scene; docs/evaluation.md#scene-rule): a table of
answer -> verdict per label set, the plural forms, and the benchmarks scoring through it."""
import pytest

from onellm.evaluation.scene import NYU_SCENE_TYPES, NYUV2, SUNRGBD, normalise_answer, plural_forms

# (answer, label, verdict)
NYU_TABLE = [
    ("bedroom", "bedroom", True),
    ("It is a bedroom.", "bedroom", True),             # the right class with extra words
    ("Bedrooms", "bedroom", True),                     # plural
    ("bed room", "bedroom", True),                     # synonym (spelling)
    ("living room", "living_room", True),
    ("living_room", "living_room", True),
    ("Living-room.", "living_room", True),
    ("livingroom", "living_room", True),
    ("bedroom or kitchen", "bedroom", False),          # several classes: wrong
    ("a bedroom and a bathroom", "bathroom", False),
    ("home office", "home_office", True),
    ("home office", "office", False),                  # "office" inside "home office" is not named
    ("office", "home_office", False),
    ("offices", "office", True),
    ("book store", "bookstore", True),
    ("bookshops", "bookstore", True),
    ("classroom", "others", False),
    ("other", "others", True),                         # NYU's catch-all class, by its own name
    ("Others.", "others", True),
    ("It belongs to the other category", "others", True),
    ("foyer", "others", True),                         # NYU scene types the protocol folds into "others"
    ("a cafe", "others", True),
    ("dinette", "others", True),
    ("conference room", "others", True),
    ("study room", "others", True),
    ("office kitchen", "others", True),                # the folded type wins over the classes inside it
    ("office kitchen", "kitchen", False),
    ("office kitchen", "office", False),
    ("a kitchen, unlike the other rooms", "kitchen", False),  # names "other" too: several classes
    ("room", "living_room", False),                    # names no class
    ("", "bedroom", False),
]

SUN_TABLE = [
    ("corridor", "corridor", True),
    ("hallway", "corridor", True),                     # synonym
    ("Hallways", "corridor", True),
    ("a long hallway with doors", "corridor", True),
    ("library", "library", True),
    ("libraries", "library", True),                    # -y -> -ies
    ("lecture theatre", "lecture_theatre", True),
    ("lecture theater", "lecture_theatre", True),      # US spelling
    ("lecture theatres", "lecture_theatre", True),
    ("lecture hall", "lecture_theatre", True),
    ("lab", "lab", True),
    ("laboratory", "lab", True),
    ("labs", "lab", True),
    ("computer lab", "computer_room", True),           # the longer name wins over "lab"
    ("computer lab", "lab", False),
    ("computer room", "computer_room", True),
    ("meeting room", "conference_room", True),
    ("dining area", "dining_area", True),
    ("dining area", "dining_room", False),
    ("dining room", "dining_area", False),
    ("study space", "study_space", True),
    ("study area", "study_space", True),
    ("rest space", "rest_space", True),
    ("furniture store", "furniture_store", True),
    ("other", "bedroom", False),                       # SUN RGB-D has no catch-all class
    ("bedroom or bathroom", "bedroom", False),
    ("home office", "office", False),
    ("restroom", "bathroom", True),
]


@pytest.mark.parametrize("answer,label,verdict", NYU_TABLE)
def test_nyuv2_rule(answer, label, verdict):
    assert NYUV2.verdict(answer, label) is verdict


@pytest.mark.parametrize("answer,label,verdict", SUN_TABLE)
def test_sunrgbd_rule(answer, label, verdict):
    assert SUNRGBD.verdict(answer, label) is verdict


def test_label_sets():
    assert len(NYUV2.classes) == 10 and NYUV2.other_class == "others"
    assert len(NYU_SCENE_TYPES) == 27 and len(NYUV2.other_types) == 18
    # every NYU scene type maps to exactly one of the 10 classes, as the protocol's label mapping does
    for t in NYU_SCENE_TYPES:
        expected = t if t in NYUV2.classes else "others"
        assert NYUV2.named(t) == {expected}, t
    assert len(SUNRGBD.classes) == 19 and SUNRGBD.other_class is None
    for c in (*NYUV2.classes, *SUNRGBD.classes):  # every class is named by its own name (underscores as spaces)
        labels = NYUV2 if c in NYUV2.classes else SUNRGBD
        assert labels.verdict(c.replace("_", " "), c), c
    with pytest.raises(ValueError, match="not a class"):
        NYUV2.verdict("x", "corridor")


def test_plural_and_normalisation():
    assert plural_forms("library") == ("library", "librarys", "libraryes", "libraries")
    assert plural_forms("day") == ("day", "days", "dayes")  # vowel + y: no -ies
    assert normalise_answer("  Living-Room_2. ") == "living room 2"


def test_custom_class_list_keeps_known_synonyms():
    labels = SUNRGBD.with_classes(["corridor", "kitchen", "garage"])
    assert labels.verdict("hallway", "corridor") and labels.verdict("garages", "garage")
    assert not labels.verdict("library", "kitchen")
    nyu = NYUV2.with_classes(["bedroom", "kitchen"])  # no "others": "other" / folded types name nothing
    assert nyu.named("other") == set() and nyu.named("foyer") == set()
