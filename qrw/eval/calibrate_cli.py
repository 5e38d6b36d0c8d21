"""``qrw calibrate``: pick the gate's thresholds on judged training queries (cross-validated nDCG@10).

Lives with evaluation, not in ``qrw.plugin``: it reads judgments, scores rankings and searches
through ``qrw.search.runner``, none of which serving needs. The pure algorithm is
``qrw.plugin.calibrate`` (it only applies the serving gate and guards).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from qrw.cli_options import profile_option, url_option

CALIBRATION_DEPTH = 20
"""Hits ranked per body: nDCG@10 needs 10; a few more keep ties at rank 10 deterministic."""


@click.command("calibrate")
@click.option("--model", "model", default="default", show_default=True,
              help="'default', an exported folder, an adapter/checkpoint folder (exported once) or a rewrites .jsonl table")
@click.option("--judgments", type=click.Path(path_type=Path), default=None,
              help="judgments CSV (query,docid,rating); default: the Icecat judgments of the data folder")
@click.option("--queries", "queries_file", type=click.Path(path_type=Path), default=None,
              help="only these queries (one a line): the training split. Default: every judged query")
@url_option
@profile_option
@click.option("--index", default=None, help="index or alias with the catalog [default: the profile's index]")
@click.option("--folds", type=int, default=5, show_default=True, help="cross-validation folds")
@click.option("--num-rewrites", type=int, default=None, help="rewrites per query (default: the config's chain.num_rewrites)")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, help="plugin YAML config (guards, chain)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/calibrate/gate.yaml"), show_default=True,
              help="where the chosen gate section is written (YAML, mergeable into plugin.yaml)")
@click.option("--seed", type=int, default=0, show_default=True)
def calibrate(model: str, judgments: Path | None, queries_file: Path | None, url: str | None, profile_file: Path | None,
              index: str | None, folds: int, num_rewrites: int | None, config_file: Path | None, out: Path, seed: int) -> None:
    """Choose full_min, keep_min and down_weight by K-fold cross-validation of nDCG@10 on the real OpenSearch."""
    from qrw.errors import InputDataError
    from qrw.eval.judgments import load_judgments
    from qrw.eval.metrics import ndcg_at_k
    from qrw.eval.outcomes import produce_outcomes
    from qrw.plugin.calibrate import calibrate as run_calibration
    from qrw.plugin.config import dump_gate, load_config
    from qrw.plugin.engine import load_model
    from qrw.search.connect import default_url, open_client
    from qrw.search.profile import load_profile
    from qrw.search.runner import search_many

    url = url or default_url()
    profile = load_profile(profile_file)
    index = index or profile.index
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
    client = open_client(url)
    # the guards see the catalog's brands, as `qrw proxy --profile` serves them
    from qrw.search.brands import brand_list

    brands = tuple(dict.fromkeys([*config.guards.brands, *brand_list(client, profile, index, url=url)]))
    guard_config = config.guards.model_copy(update={"brands": brands})
    rewrite_model = load_model(model, strict=True)
    outcomes = produce_outcomes(rewrite_model, list(qrels), config.chain.num_rewrites)

    def search(bodies):
        rankings = search_many(client, index, bodies, depth=CALIBRATION_DEPTH, url=url, desc="calibration searches")
        return {key: ranking.ids for key, ranking in rankings.items()}

    result = run_calibration(
        outcomes, qrels,
        search=search,
        base_body=profile.baseline.build,
        scorer=lambda ranked, judged: ndcg_at_k(ranked, judged, 10),
        guard_config=guard_config, merge=config.merge, folds=folds, seed=seed,
    )
    report = {"model": getattr(rewrite_model, "name", str(model)), "judgments": str(judgments), "index": index,
              "profile": profile.name, "baseline": profile.baseline.name, "brands": len(brands), **result.as_dict()}
    click.echo(json.dumps(report, indent=2))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump_gate(result.best), encoding="utf-8")
    click.echo(f"wrote {out}", err=True)
