"""``qrw calibrate``: pick the gate's thresholds on judged training queries (cross-validated nDCG@10)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("calibrate")
@click.option("--model", "model_path", type=click.Path(path_type=Path), required=True,
              help="exported ONNX model folder, or a rewrites .jsonl table (TableRewriteModel)")
@click.option("--judgments", type=click.Path(path_type=Path), default=None,
              help="judgments CSV (query,docid,rating); default: the Icecat judgments of the data folder")
@click.option("--queries", "queries_file", type=click.Path(path_type=Path), default=None,
              help="only these queries (one a line): the training split. Default: every judged query")
@click.option("--url", default="http://127.0.0.1:9200", show_default=True, help="OpenSearch URL")
@click.option("--index", default="products", show_default=True, help="index or alias with the catalog")
@click.option("--folds", type=int, default=5, show_default=True, help="cross-validation folds")
@click.option("--num-rewrites", type=int, default=None, help="rewrites per query (default: the config's chain.num_rewrites)")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, help="plugin YAML config (guards, chain)")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="write the chosen gate section here (YAML)")
@click.option("--seed", type=int, default=0, show_default=True)
def calibrate(model_path: Path, judgments: Path | None, queries_file: Path | None, url: str, index: str, folds: int,
              num_rewrites: int | None, config_file: Path | None, out: Path | None, seed: int) -> None:
    """Choose full_min, keep_min and down_weight by K-fold cross-validation of nDCG@10 on the real OpenSearch."""
    from qrw.errors import ConfigError, InputDataError
    from qrw.eval.judgments import load_judgments
    from qrw.eval.metrics import ndcg_at_k
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.plugin.calibrate import calibrate as run_calibration
    from qrw.plugin.config import dump_gate, load_config
    from qrw.plugin.engine import load_model
    from qrw.plugin.offline import msearch_ranked, produce_outcomes
    from qrw.search.connect import open_client

    config = load_config(config_file, **({"chain": {"num_rewrites": num_rewrites}} if num_rewrites else {}))
    if judgments is None:
        from qrw.search.catalog import default_data_dir

        judgments = default_data_dir() / "judgments" / "judgments.csv"
    qrels = load_judgments(judgments)
    if queries_file is not None:
        if not queries_file.is_file():
            raise InputDataError(f"queries file not found: {queries_file}")
        wanted = [line.strip() for line in queries_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        missing = [q for q in wanted if q not in qrels]
        if missing:
            raise InputDataError(f"{len(missing)} queries of {queries_file} have no judgments, e.g. {missing[0]!r}")
        qrels = {q: qrels[q] for q in wanted}
    model = load_model(model_path)
    if model is None:
        raise ConfigError(f"no usable rewrite model at {model_path} (see the warning above)")
    client = open_client(url)
    outcomes = produce_outcomes(model, list(qrels), config.chain.num_rewrites)
    builder = DEFAULT_BASELINE
    result = run_calibration(
        outcomes, qrels,
        search=lambda bodies: msearch_ranked(client, index, bodies, url=url),
        base_body=builder.build,
        scorer=lambda ranked, judged: ndcg_at_k(ranked, judged, 10),
        guard_config=config.guards, folds=folds, seed=seed,
    )
    report = {"model": getattr(model, "name", str(model_path)), "judgments": str(judgments), "index": index, **result.as_dict()}
    click.echo(json.dumps(report, indent=2))
    if out is not None:
        out.write_text(dump_gate(result.best), encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
