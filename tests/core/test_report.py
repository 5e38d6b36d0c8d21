"""The markdown report shows, beside each win and loss, what the judgments can see of it."""

from qrw.eval.report import summary_table, wins_and_losses


def _row(query, ndcg, condensed, judged, **extra):
    return {"query": query, "ndcg@10": ndcg, "condensed_ndcg@10": condensed, "judged@10": judged, **extra}


RESULT = {
    "systems": {
        "original": {"ndcg@10": 0.5, "condensed_ndcg@10": 0.55, "judged@10": 0.8, "per_query": [
            _row("laptop", 0.40, 0.50, 0.8), _row("usb stick", 0.60, 0.60, 1.0)]},
        "gated:m": {"ndcg@10": 0.55, "condensed_ndcg@10": 0.7, "judged@10": 0.7, "per_query": [
            _row("laptop", 0.20, 0.80, 0.5, decisions=[{"text": "notebook", "action": "full", "weight": 1.0}]),
            _row("usb stick", 0.90, 0.90, 1.0, decisions=[{"text": "flash drive", "action": "down", "weight": 0.5}])]},
    },
}


def test_a_loss_to_unjudged_products_shows_as_a_condensed_gain_and_falling_judged_share():
    table = wins_and_losses(RESULT, "gated:m")
    losses = table.split("largest losses")[1]
    laptop = next(line for line in losses.splitlines() if line.startswith("| laptop |"))
    cells = [c.strip() for c in laptop.strip("|").split("|")]
    assert cells[:6] == ["laptop", "0.400", "0.200", "-0.200", "+0.300", "0.8 → 0.5"]
    wins = table.split("largest losses")[0]
    usb = next(line for line in wins.splitlines() if line.startswith("| usb stick |"))
    assert [c.strip() for c in usb.strip("|").split("|")][4:6] == ["+0.300", "1.0"]  # judged share unchanged: one figure


def test_summary_table_has_condensed_ndcg_and_judged_share_columns():
    table = summary_table(RESULT)
    header, _, original, gated = table.splitlines()
    assert "condensed nDCG@10" in header and "judged@10" in header
    assert "0.5500" in original and "0.80" in original
    assert "0.7000" in gated and "0.70" in gated
