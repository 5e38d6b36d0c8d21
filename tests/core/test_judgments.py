"""The judgments reader rejects every malformed input with a message naming the line."""

import pytest

from qrw.errors import InputDataError
from qrw.eval.judgments import load_judgments


def write(tmp_path, text):
    path = tmp_path / "j.csv"
    path.write_text(text)
    return path


def test_reads_rows(tmp_path):
    qrels = load_judgments(write(tmp_path, "query,docid,rating\nlaptop,1,3\nlaptop,2,0\nmouse,3,2\n"))
    assert qrels == {"laptop": {"1": 3, "2": 0}, "mouse": {"3": 2}}


@pytest.mark.parametrize(
    "text, message",
    [
        ("query,docid\nlaptop,1\n", "missing column"),
        ("query,docid,rating\nlaptop,1,high\n", ":2: rating 'high' is not an integer"),
        ("query,docid,rating\nlaptop,1,2.5\n", "not an integer"),
        ("query,docid,rating\nlaptop,1,7\n", "outside 0-3"),
        ("query,docid,rating\n,1,2\n", "empty query"),
        ("query,docid,rating\nlaptop,1,2\nlaptop,1,3\n", "judged twice"),
        ("query,docid,rating\n", "no judgments"),
        ("", "missing column"),
    ],
)
def test_rejects_malformed(tmp_path, text, message):
    with pytest.raises(InputDataError, match=message):
        load_judgments(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(InputDataError, match="not found"):
        load_judgments(tmp_path / "nope.csv")


def test_real_development_judgments(judgments_path):
    qrels = load_judgments(judgments_path)
    assert len(qrels) == 93
    assert all(0 <= g <= 3 for judged in qrels.values() for g in judged.values())
