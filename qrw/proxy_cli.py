"""``qrw proxy``: the plugin's proxy command, plus what only the qrw side knows: ``--profile`` and the URL variable.

Why a wrapper: serving (``qrw.plugin``) never imports ``qrw.search``, so the plugin's own command
cannot read an index profile. This one reads it and turns it into plugin configuration: the brand
list of the profile's brand field (read from the index) joins ``guards.brands``, so the brand guard
knows the catalog's brands, and the profile's index is what is rewritten unless the config says
otherwise. The merged configuration is written under ``runs/proxy/`` (or beside ``--config-out``)
and handed to the plugin's command; every other option is the plugin's own, passed through as is.
``--upstream`` defaults to ``$QRW_OPENSEARCH_URL``, ``--model`` to the default rewriter.
"""

from __future__ import annotations

import copy
from pathlib import Path

import click
import yaml

from qrw.cli_options import profile_param
from qrw.plugin.proxy_cli import proxy as plugin_proxy
from qrw.search.connect import URL_ENV, default_url


def profile_plugin_config(profile_file: Path | None, upstream: str, config_file: Path | None, out: Path) -> Path:
    """Write ``config_file`` (or the defaults) plus the profile's brands and index to ``out``; return ``out``."""
    from qrw.plugin.config import load_config
    from qrw.search.brands import brand_list
    from qrw.search.connect import open_client
    from qrw.search.profile import load_profile
    from qrw.settings import read_yaml_mapping

    profile = load_profile(profile_file)
    data = read_yaml_mapping(config_file) if config_file is not None else {}
    guards = dict(data.get("guards") or {})
    brands = brand_list(open_client(upstream), profile, url=upstream)
    guards["brands"] = list(dict.fromkeys([*(guards.get("brands") or []), *brands]))
    data["guards"] = guards
    proxy = dict(data.get("proxy") or {})
    proxy.setdefault("rewrite_indices", [profile.index, f"{profile.index}-*"])
    data["proxy"] = proxy
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"# written by `qrw proxy --profile {profile_file or 'icecat'}`: {len(brands)} brands from "
                   f"{profile.brand_field or '(no brand field)'} of {profile.index}\n"
                   + yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    load_config(out)  # fail here, naming the file, if the merge is not a valid plugin config
    return out


def _params() -> list[click.Parameter]:
    params = []
    for param in plugin_proxy.params:
        if param.name in ("upstream", "upstreams"):  # the plugin's --upstream (repeatable: "upstreams")
            param = copy.copy(param)
            param.required = False
            param.envvar = URL_ENV
            param.help = f"OpenSearch base URL [default: ${URL_ENV}, else http://127.0.0.1:9200]"
        elif param.name == "model_dir":
            param = copy.copy(param)
            param.type = click.STRING
            param.default = "default"
            param.show_default = True
            param.help = ("'default' (the default rewriter), an exported folder, an adapter or checkpoint folder "
                          "(exported once, cached), a rewrites .jsonl table, or 'none'; a missing or invalid model serves original queries")
        params.append(param)
    params += [
        profile_param("index profile YAML: the brands of its brand field feed the brand guard, its index is rewritten"),
        click.Option(["--config-out"], type=click.Path(path_type=Path), default=Path("runs/proxy/plugin.yaml"),
                     show_default=True, help="where the configuration merged with --profile is written"),
    ]
    return params


@click.pass_context
def _run(ctx: click.Context, profile_file: Path | None, config_out: Path, **options) -> None:
    upstreams = tuple(options.get("upstreams") or ()) or (default_url(),)
    options["upstreams"] = upstreams
    if str(options.get("model_dir")).lower() == "none":
        options["model_dir"] = None  # serve original queries only
    if profile_file is not None:
        options["config_file"] = profile_plugin_config(profile_file, upstreams[0].split(",")[0], options.get("config_file"), config_out)
    ctx.invoke(plugin_proxy, **options)


proxy = click.Command(
    "proxy", params=_params(), callback=_run, help=plugin_proxy.help
    + "\n\nWith --profile, the profile's brand list (read from the index) feeds the brand guard.",
)
