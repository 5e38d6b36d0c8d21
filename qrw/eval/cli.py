"""``qrw eval``: score a query builder on a judgments file against a live index."""

from __future__ import annotations

import json
from pathlib import Path

import click

from qrw.settings import EvalSettings, load_settings


@click.command("eval")
@click.option("--judgments", type=click.Path(path_type=Path), required=True, help="CSV with query,docid,rating (0-3)")
@click.option("--url", default=None, help="OpenSearch base URL [default: http://127.0.0.1:9200]")
@click.option("--index", default=None, help="index or alias [default: products]")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="write the full report here")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, help="YAML with an 'eval' section")
@click.option("--quiet", is_flag=True, help="print only the mean row")
def eval_command(judgments: Path, url: str | None, index: str | None, json_out: Path | None,
                 config_file: Path | None, quiet: bool) -> None:
    """nDCG@10, condensed nDCG@10, recall@100, precision@10 and judged@10 per query and on average."""
    from qrw.eval.harness import evaluate_run, format_table
    from qrw.eval.judgments import load_judgments
    from qrw.eval.runs import BaselineQueryBuilder, produce_run
    from qrw.search.connect import open_client

    settings = load_settings(EvalSettings, config_file, "eval", {"search.url": url, "search.index": index})
    qrels = load_judgments(judgments)
    client = open_client(settings.search.url)
    run = produce_run(client, settings.search.index, list(qrels), BaselineQueryBuilder(),
                      depth=settings.depth, batch_size=settings.batch_size, url=settings.search.url)
    report = evaluate_run(run, qrels)
    report["system"] = "original"
    report["index"] = settings.search.index
    click.echo(format_table(report, per_query=not quiet))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))
        click.echo(f"wrote {json_out}")
