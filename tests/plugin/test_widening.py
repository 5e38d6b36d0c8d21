"""Which kept rewrites may add documents under the ``confident`` merge mode: respellings, confident and pinned ones."""

import pytest

from qrw.plugin.widening import is_respelling, may_add_documents


@pytest.mark.parametrize("query, rewrite", [
    ("labtop", "laptop"),               # substitution
    ("hedphones", "headphones"),        # insertion
    ("mouse", "muose"),                 # two neighbours swapped
    ("usb stick", "usb stck"),          # one word of several
    ("smart watch", "smartwatch"),      # joined
    ("smartwatch", "smart watch"),      # split
    ("wi-fi router", "wifi router"),    # hyphen
])
def test_respellings(query, rewrite):
    assert is_respelling(query, rewrite)


@pytest.mark.parametrize("query, rewrite", [
    ("laptop", "laptop"),               # a copy is not a rewrite
    ("netflix", "network cable"),       # another meaning
    ("rtx 2060", "rx 2060"),            # a model name, however close
    ("32gb usb", "23gb usb"),           # digits never count as typos
    ("tv", "tvs"),                      # too short to tell a typo from another word
    ("lenovo", "leno"),                 # two edits
    ("dvd player", "player"),           # a word dropped
    ("headphones", "headphones black"), # a word added
    ("", "laptop"),
])
def test_not_respellings(query, rewrite):
    assert not is_respelling(query, rewrite)


def test_who_may_add_documents():
    assert may_add_documents("beamer", "projector", full=True)
    assert may_add_documents("beamer", "projector", full=False, from_rule=True)
    assert may_add_documents("labtop", "laptop", full=False)
    assert not may_add_documents("netflix", "network cable", full=False)
