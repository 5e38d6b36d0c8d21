"""``qrw eval``: score systems on a judgments file against a live index, side by side."""

from __future__ import annotations

import json
from pathlib import Path

import click

from qrw.cli_options import profile_option, url_option
from qrw.settings import EvalSettings, load_settings


@click.command("eval")
@click.option("--judgments", type=click.Path(path_type=Path), required=True,
              help="CSV with query,docid,rating (0-3); docid is the document's _id")
@click.option("--systems", default="original", show_default=True,
              help="comma list of original, legacy, prf, ungated[:MODEL], gated[:MODEL]")
@click.option("--model", "models", multiple=True,
              help="rewriter for ungated/gated: 'default', an exported folder, a checkpoint, a .jsonl table or a name "
                   "from `qrw model list`; repeat to compare several [default: the default rewriter, exported once]")
@click.option("--plugin-config", type=click.Path(path_type=Path), default=None, help="plugin YAML (gate, guards, merge, ...) whose keys override each model's shipped serving.yaml")
@click.option("--num-rewrites", type=int, default=4, show_default=True)
@url_option
@profile_option
@click.option("--index", default=None, help="index or alias [default: the profile's index, else products]")
@click.option("--out", "--json", "json_out", type=click.Path(path_type=Path), default=Path("runs/eval/report.json"),
              show_default=True, help="write the full JSON report here")
@click.option("--plots", "plots_dir", type=click.Path(path_type=Path), default=None, help="write PNG plots here")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, help="YAML with an 'eval' section")
@click.option("--split", "split_file", type=click.Path(path_type=Path), default=None,
              help="split.json from `qrw train data`: evaluate only the queries of one of its folds (--fold)")
@click.option("--fold", type=click.Choice(["valid", "train"]), default="valid", show_default=True,
              help="with --split: the validation queries (never trained on) or the training queries (seen in training)")
@click.option("--quiet", is_flag=True, help="print only the mean rows")
@click.option("--report", "report_out", type=click.Path(path_type=Path), default=None,
              help="write a markdown report: summary, and the 20 largest per-query wins and losses with rewrites and tags")
def eval_command(judgments: Path, systems: str, models: tuple[str, ...], plugin_config: Path | None, num_rewrites: int,
                 url: str | None, profile_file: Path | None, index: str | None, json_out: Path, plots_dir: Path | None,
                 config_file: Path | None, split_file: Path | None, fold: str, quiet: bool, report_out: Path | None) -> None:
    """nDCG@10, condensed nDCG@10, recall@100, precision@10, judged@10 (and, with several systems,
    harm/win rate, increment, rewrite relevance, latency and significance against original).

    The baseline query and the index come from --profile (default: the shipped Icecat profile).
    Pointing --url at the rewriting proxy evaluates what the proxy serves.
    """
    from qrw.eval.judgments import load_judgments
    from qrw.search.connect import open_client
    from qrw.search.profile import load_profile
    from qrw.search.runner import require_fields

    profile = load_profile(profile_file)
    settings = load_settings(EvalSettings, config_file, "eval", {
        "search.url": url, "search.index": index or (profile.index if profile_file is not None else None)})
    qrels = load_judgments(judgments)
    if split_file is not None:
        qrels = _fold_only(qrels, split_file, fold)
    client = open_client(settings.search.url)
    require_fields(client, settings.search.index, profile.baseline.fields,
                   what=f"the baseline {profile.baseline.name!r}", url=settings.search.url)
    names = [name.strip() for name in systems.split(",") if name.strip()]
    if names == ["original"]:
        report = _single(client, settings, qrels, profile, quiet)
    else:
        report = _compare(client, settings, qrels, profile, names, models, plugin_config, num_rewrites, plots_dir)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(report, indent=2))
    click.echo(f"wrote {json_out}")
    if report_out is not None and "systems" in report:
        import shlex
        import sys

        from qrw.eval.report import write_report

        fold_name = "validation" if fold == "valid" else "training"
        method = (f"{report['queries']} judged queries{f' ({fold_name} fold of {split_file})' if split_file else ''}; "
                  f"index {report['index']}; harm/win: nDCG@10 change beyond ±0.05 against original.")
        command = "qrw eval " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 1 else "qrw eval"
        click.echo(f"wrote {write_report(report, report_out, title='Rewriting against the strongest baseline', method=method, command=command)}")


def _single(client, settings: EvalSettings, qrels, profile, quiet: bool) -> dict:
    from qrw.eval.harness import evaluate_run, format_table
    from qrw.eval.runs import produce_run

    run = produce_run(client, settings.search.index, list(qrels), profile.baseline,
                      depth=settings.depth, batch_size=settings.batch_size, url=settings.search.url)
    report = evaluate_run(run, qrels)
    report.update({"system": "original", "index": settings.search.index, "profile": profile.name,
                   "baseline": profile.baseline.model_dump(mode="json")})
    click.echo(format_table(report, per_query=not quiet))
    return report


def _model_argument(model: str) -> str:
    """'default' and names from `qrw model list` become exported folders; paths are passed on as given."""
    from qrw.plugin import model_store

    if model == model_store.DEFAULT_MODEL or (not Path(model).exists() and (model_store.cache_root() / model).is_dir()):
        return str(model_store.resolve(model))
    return model


def _compare(client, settings: EvalSettings, qrels, profile, names, models, plugin_config, num_rewrites, plots_dir) -> dict:
    from qrw.eval.compare import SystemSpec, compare_systems, format_comparison
    from qrw.plugin.config import load_config

    models = tuple(_model_argument(m) for m in models)
    default_model = None
    if not models and any(n.split(":")[0] in ("ungated", "gated") and ":" not in n for n in names):
        default_model = _model_argument("default")
    specs = []
    for name in names:
        if name in ("ungated", "gated") and models:
            specs += [SystemSpec.parse(f"{name}:{model}", None) for model in models]
        else:
            specs.append(SystemSpec.parse(name, default_model))
    from qrw.search.brands import exact_brand_field

    # the profile's baseline is `original`; its brand field feeds the guards and the added-brand rate;
    # each model's shipped serving.yaml (else the defaults), with --plugin-config's keys over it
    if plugin_config is not None:
        load_config(plugin_config)  # a bad file fails here, before any model is loaded
    result = compare_systems(client, settings.search.index, qrels, specs, plugin_config=plugin_config,
                             num_rewrites=num_rewrites, depth=settings.depth, url=settings.search.url,
                             baseline=profile.baseline,
                             brand_field=exact_brand_field(client, profile, settings.search.index, url=settings.search.url))
    click.echo(format_comparison(result))
    if plots_dir is not None:
        from qrw.eval.plots import plot_deltas, plot_latency_cdf

        for path in (plot_deltas(result, plots_dir / "ndcg_deltas.png"), plot_latency_cdf(result, plots_dir / "latency_cdf.png")):
            click.echo(f"wrote {path}")
    return result


def _fold_only(qrels: dict, split_file: Path, fold: str = "valid") -> dict:
    """Keep the judged queries of one fold of the split: ``valid`` (held out) or ``train``."""
    from qrw.errors import InputDataError

    key = f"{fold}_queries"
    try:
        wanted = {q.strip().casefold() for q in json.loads(split_file.read_text())[key]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputDataError(f"{split_file}: not a split file with '{key}' ({exc})") from exc
    kept = {query: judged for query, judged in qrels.items() if query.strip().casefold() in wanted}
    if not kept:
        raise InputDataError(f"none of the judged queries is in the {fold} fold of {split_file}")
    return kept


@click.command("baselines")
@click.option("--judgments", type=click.Path(path_type=Path), default=None,
              help="CSV with query,docid,rating (default: the Icecat development judgments)")
@url_option
@click.option("--index", default=None, help="index or alias [default: products]")
@click.option("--folds", type=int, default=5, show_default=True, help="hash folds over the judged queries")
@click.option("--valid-fold", type=int, default=0, show_default=True, help="the fold held out (never tuned on)")
@click.option("--min-gain", type=float, default=0.005, show_default=True,
              help="CV nDCG@10 margin the tuned weights need over the best untuned variant")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("runs/baselines"), show_default=True,
              help="folder for baselines.md and baselines.json")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None, help="YAML with an 'eval' section")
def baselines_command(judgments: Path | None, url: str | None, index: str | None, folds: int, valid_fold: int,
                      min_gain: float, out_dir: Path, config_file: Path | None) -> None:
    """Compare every baseline variant and choose field weights by cross-validation on the training folds."""
    from qrw.eval.baselines import WEIGHT_GRID, format_report, select_baseline
    from qrw.eval.judgments import load_judgments
    from qrw.search.baseline import VARIANTS
    from qrw.search.catalog import default_data_dir
    from qrw.search.connect import open_client
    from qrw.search.runner import require_fields

    settings = load_settings(EvalSettings, config_file, "eval", {"search.url": url, "search.index": index})
    qrels = load_judgments(judgments or default_data_dir() / "judgments" / "judgments.csv")
    client = open_client(settings.search.url)
    require_fields(client, settings.search.index, [*WEIGHT_GRID, *(f for spec in VARIANTS.values() for f in spec.fields)],
                   what="a baseline variant or the weight grid", url=settings.search.url)
    report = select_baseline(client, settings.search.index, qrels, folds=folds, valid_fold=valid_fold,
                             min_gain=min_gain, url=settings.search.url)
    text = format_report(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "baselines.json").write_text(json.dumps(report, indent=2))
    (out_dir / "baselines.md").write_text(text + "\n")
    click.echo(text)
    click.echo(f"chosen: {report['chosen']['name']} ({', '.join(report['chosen']['fields'])}); wrote {out_dir}")
