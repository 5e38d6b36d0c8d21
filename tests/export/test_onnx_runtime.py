"""The torch-free runtime on the exported tiny model: equality with PyTorch, strategies, threads,
manifest checks, and the promise that importing it never loads torch."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from qrw.plugin.model import RewriteModel
from qrw.plugin.prompt import TAGS, rewrite_prompt, tag_prompt
from qrw.plugin.runtime import GenerationConfig, load_model, select_providers
from qrw.plugin.runtime_manifest import ModelFolderError, read_manifest

QUERIES = ["laptop", "hp toner 305a", "usb c cable", "samsung monitor 27", "wireless mouse logitech", "sd card", "a"]


def _torch_generate(tiny_torch, prompts, eos_ids, pad_id, **kwargs) -> list[list[int]]:
    import torch
    from transformers import GenerationConfig as HFGenerationConfig

    tokenizer, model = tiny_torch
    enc = tokenizer(prompts, padding=True, return_tensors="pt")
    config = HFGenerationConfig(max_new_tokens=12, do_sample=False, eos_token_id=list(eos_ids), pad_token_id=pad_id, **kwargs)
    with torch.inference_mode():
        out = model.generate(**enc, generation_config=config)
    rows = []
    for row in out[:, enc.input_ids.shape[1] :].tolist():
        rows.append(row[: next((i for i, t in enumerate(row) if t in eos_ids), len(row))])
    return rows


def test_runtime_greedy_text_equals_pytorch(tiny_runtime, tiny_torch):
    prompts = [rewrite_prompt(q) for q in QUERIES]
    spec = tiny_runtime.spec
    expected_ids = _torch_generate(tiny_torch, prompts, spec.eos_token_ids, spec.pad_token_id, num_beams=1)
    got = tiny_runtime.generate_texts(prompts, 1, GenerationConfig(strategy="greedy", max_new_tokens=12, stop_at_newline=False))
    tokenizer = tiny_torch[0]
    expected = [tokenizer.decode(ids, skip_special_tokens=True) for ids in expected_ids]
    assert [g[0] for g in got] == expected
    assert any(text for text in expected)  # the comparison is not vacuous


def test_runtime_beam_search_equals_pytorch(tiny_runtime, tiny_torch):
    prompts = [rewrite_prompt(q) for q in QUERIES]
    spec = tiny_runtime.spec
    expected = _torch_generate(tiny_torch, prompts, spec.eos_token_ids, spec.pad_token_id, num_beams=4, num_return_sequences=4)
    got = tiny_runtime.generate_ids(prompts, 4, GenerationConfig(strategy="beam", max_new_tokens=12))
    assert [seq for per_prompt in got for seq in per_prompt] == expected


def test_tag_probabilities_equal_pytorch(tiny_runtime, tiny_torch):
    import torch

    pairs = [(q, r) for q in QUERIES for r in ("notebook", q)]
    got = tiny_runtime.tag(pairs)
    tokenizer, model = tiny_torch
    enc = tokenizer([tag_prompt(q, r) for q, r in pairs], padding=True, return_tensors="pt")
    position_ids = (enc.attention_mask.cumsum(-1) - 1).masked_fill(enc.attention_mask == 0, 1)
    with torch.inference_mode():
        logits = model(**enc, position_ids=position_ids).logits[:, -1, list(tiny_runtime.spec.tag_ids)]
    expected = torch.softmax(logits, -1).numpy()
    assert [list(d) for d in got] == [[t.name for t in TAGS]] * len(pairs)
    np.testing.assert_allclose([[d[t.name] for t in TAGS] for d in got], expected, atol=1e-5)
    assert all(abs(sum(d.values()) - 1) < 1e-5 for d in got)


def test_greedy_list_stops_at_newline_separators_and_the_cap(tiny_export, tiny_runtime, tiny_torch):
    """Serving decoding = transformers' greedy search cut at the first newline token, or once n
    separators are out, or at the cap. The tiny model is random, so the stop tokens are chosen from
    its own greedy output (the tables are data); a batch must give what each prompt gives alone,
    although rows finish at different steps and leave the batch."""
    spec = tiny_runtime.spec
    prompts = [f"{q} {p}" for q in QUERIES for p in ("Rewrite:", "Tag")]  # the random model varies more here
    reference = _torch_generate(tiny_torch, prompts, spec.eos_token_ids, spec.pad_token_id, num_beams=1)
    model = load_model(tiny_export, warmup=False)
    counts: dict[int, int] = {}
    for row in reference:
        for t in set(row):
            counts[t] = counts.get(t, 0) + 1
    stops = sorted(t for t, c in counts.items() if c < len(reference))[::2]  # tokens some rows write, others not
    model._newline[:] = False
    model._newline[stops] = True
    model._separators[:] = 0
    got = model.generate_ids(prompts, 1, GenerationConfig(strategy="greedy", max_new_tokens=12))
    expected = []
    for row in reference:
        cut = next((i for i, t in enumerate(row) if t in stops), None)
        expected.append(row if cut is None else row[: cut + 1])
    assert [g[0] for g in got] == expected
    assert len({len(e) for e in expected}) > 1  # rows did finish at different steps
    assert [model.generate_ids([p], 1, GenerationConfig(strategy="greedy", max_new_tokens=12))[0] for p in prompts] == got
    # separators: stop once the row holds n of them
    model._newline[:] = False
    model._separators[stops] = 1
    seqs, _ = model._greedy(model._encode(prompts), 12, 2)
    for seq, row in zip(seqs, reference):
        hits = [i for i, t in enumerate(row) if t in stops]
        assert seq == (row[: hits[1] + 1] if len(hits) >= 2 else row)
    # the cap: the manifest's, unless the config names one
    assert model.max_new_tokens == read_manifest(tiny_export).max_new_tokens
    model._separators[:] = 0
    assert max(len(s) for s in model._greedy(model._encode(prompts), 5, 0)[0]) == 5


@pytest.mark.parametrize("io_binding", [False, True])
def test_prompt_lookup_decoding_gives_greedy_output_in_fewer_passes(tiny_export, io_binding):
    """Drafts verified in one pass (the qrw graph's num_logits input) must not change a single token,
    with or without the stop rules, and must save passes where the text repeats itself."""
    from qrw.plugin.runtime import _lookup_draft

    assert _lookup_draft([5, 6, 7, 9, 5, 6], 3) == [7, 9, 5] and _lookup_draft([1, 2, 3], 2) == [] and _lookup_draft([4, 4], 0) == []
    model = load_model(tiny_export, warmup=False, io_binding=io_binding)
    assert model._has_num_logits
    passes = []
    original = model._run
    model._run = lambda *a, **k: passes.append(k.get("num_logits")) or original(*a, **k)
    prompts = [f"{q} Rewrite:" for q in QUERIES] + [rewrite_prompt(q) for q in QUERIES] + [f"Query: {q} {q}" for q in QUERIES]
    fed = 0
    for stop in (False, True):
        for prompt in prompts:
            plain = model.generate_ids([prompt], 1, GenerationConfig(max_new_tokens=20, lookahead=0, stop_at_newline=stop))
            passes.clear()
            drafted = model.generate_ids([prompt], 1, GenerationConfig(max_new_tokens=20, lookahead=4, stop_at_newline=stop))
            assert drafted == plain, prompt
            fed += len(plain[0][0])
            assert len(passes) <= len(plain[0][0]) + 1
    assert any(n and n > 1 for n in passes)  # drafts were verified


def test_token_tables_find_newlines_and_separators(tiny_runtime):
    tokenizer = tiny_runtime.tokenizer
    newline = tokenizer.encode("\n", add_special_tokens=False).ids
    semicolon = tokenizer.encode(";", add_special_tokens=False).ids
    letter = tokenizer.encode("a", add_special_tokens=False).ids
    assert len(newline) == 1 and tiny_runtime._newline[newline[0]]
    assert len(semicolon) == 1 and tiny_runtime._separators[semicolon[0]] == 1
    assert not tiny_runtime._newline[letter[0]] and tiny_runtime._separators[letter[0]] == 0


def test_rewrite_and_tag_reuses_the_prefix_and_equals_pytorch_tags(tiny_runtime, tiny_torch):
    """Tags read behind the prompt's own prefix KV cache equal PyTorch on the full tagging prompts."""
    import torch

    outputs = tiny_runtime.rewrite_outputs(QUERIES, 3)
    pairs = [(q, r) for q, out in zip(QUERIES, outputs) for r in out.rewrites]
    assert pairs and all(len(o.probabilities) == len(o.rewrites) for o in outputs)
    calls = []
    original = tiny_runtime.tag_probs
    tiny_runtime.tag_probs = lambda prompts: calls.append(prompts) or original(prompts)  # the no-reuse fallback
    try:
        again = tiny_runtime.rewrite_and_tag(QUERIES, 3)
        grouped = tiny_runtime.tag([(q, r) for q in QUERIES[:3] for r in ("notebook", "hp toner", q)])
    finally:
        del tiny_runtime.tag_probs
    assert calls == []  # every row went through the prefix path
    tokenizer, model = tiny_torch
    for rows, probs in (([tag_prompt(q, r) for q, r in pairs], [p for o in outputs for p in o.probabilities]),
                        ([tag_prompt(q, r) for q in QUERIES[:3] for r in ("notebook", "hp toner", q)], grouped)):
        enc = tokenizer(rows, padding=True, return_tensors="pt")
        position_ids = (enc.attention_mask.cumsum(-1) - 1).masked_fill(enc.attention_mask == 0, 1)
        with torch.inference_mode():
            logits = model(**enc, position_ids=position_ids).logits[:, -1, list(tiny_runtime.spec.tag_ids)]
        np.testing.assert_allclose([[p[t.name] for t in TAGS] for p in probs], torch.softmax(logits, -1).numpy(), atol=1e-5)
    assert [[r for r, _ in per] for per in again] == [o.rewrites for o in outputs]


def test_generate_returns_parsed_unique_rewrites_per_query(tiny_runtime):
    assert isinstance(tiny_runtime, RewriteModel)
    result = tiny_runtime.generate(QUERIES, 4)
    assert len(result) == len(QUERIES)
    for rewrites in result:
        assert 1 <= len(rewrites) <= 4
        assert len({r.lower() for r in rewrites}) == len(rewrites)
        assert all(r and "\n" not in r and len(r.split()) <= 12 for r in rewrites)
    assert tiny_runtime.generate([], 4) == [] and tiny_runtime.tag([]) == []


def test_sampling_gives_n_per_query_and_is_reproducible_with_a_seed(tiny_runtime):
    config = GenerationConfig(strategy="sample", seed=7, max_new_tokens=6)
    first = tiny_runtime.generate_ids([rewrite_prompt(q) for q in QUERIES[:3]], 5, config)
    again = tiny_runtime.generate_ids([rewrite_prompt(q) for q in QUERIES[:3]], 5, config)
    assert first == again
    assert [len(per) for per in first] == [5, 5, 5]
    assert all(len(seq) <= 6 for per in first for seq in per)
    assert len({tuple(s) for per in first for s in per}) > 3  # samples differ


def test_io_binding_path_gives_the_same_results(tiny_export, tiny_runtime):
    bound = load_model(tiny_export, io_binding=True)
    assert bound.io_binding
    prompts = [rewrite_prompt(q) for q in QUERIES]
    for strategy in ("greedy", "beam"):
        config = GenerationConfig(strategy=strategy)
        assert bound.generate_ids(prompts, 3, config) == tiny_runtime.generate_ids(prompts, 3, config)
    np.testing.assert_allclose(bound.tag_probs([tag_prompt("a", "b")]), tiny_runtime.tag_probs([tag_prompt("a", "b")]), atol=1e-6)
    # the serving call: prefix KV sliced and spread to the tag rows by the device-side gather graph
    got, expected = bound.rewrite_outputs(QUERIES, 3), tiny_runtime.rewrite_outputs(QUERIES, 3)
    assert bound._kv_ops is not None and [o.rewrites for o in got] == [o.rewrites for o in expected]
    for g, e in zip(got, expected):
        np.testing.assert_allclose([list(p.values()) for p in g.probabilities], [list(p.values()) for p in e.probabilities], atol=1e-6)


def test_in_graph_top_k_decoding_equals_full_vocabulary_decoding(tiny_export, tiny_runtime):
    """qrw-export adds top-16 log-prob outputs; greedy and beam read them instead of the full
    logits. The result must be the very same tokens as ranking the whole vocabulary on the host."""
    from qrw.export.graph import TOP_K

    assert tiny_runtime.top_k == TOP_K
    assert f"top-{TOP_K}-logprobs" in json.loads((tiny_export / "manifest.json").read_text())["optimizations"]
    full = load_model(tiny_export, warmup=False)
    full.top_k = 0  # as an export without the top-k outputs: every step ships (rows x vocab) logits
    prompts = [rewrite_prompt(q) for q in QUERIES]
    for strategy, n in (("greedy", 1), ("beam", 4), ("beam", 8)):
        config = GenerationConfig(strategy=strategy, max_new_tokens=12, stop_at_newline=False)
        assert tiny_runtime.generate_ids(prompts, n, config) == full.generate_ids(prompts, n, config), (strategy, n)


def test_propose_skips_none_as_first_token_like_pytorch_begin_suppress(tiny_export, tiny_torch):
    """``propose``: a query the model would answer ``none`` still gets its best other rewrite. The tiny
    model never says ``none``, so its own first greedy token for the first query plays that part; the
    result must be PyTorch's greedy search with that token suppressed at the first step, on the
    in-graph top-k path, the full-vocabulary path and the one-prompt lookahead path."""
    prompts = [rewrite_prompt(q) for q in QUERIES]
    model = load_model(tiny_export, warmup=False)
    plain = GenerationConfig(strategy="greedy", max_new_tokens=12, stop_at_newline=False)
    first = model.generate_ids(prompts[:1], 1, plain)[0][0][0]
    model._none_id = first  # "none" for this test
    spec = model.spec
    expected = _torch_generate(tiny_torch, prompts, spec.eos_token_ids, spec.pad_token_id, num_beams=1, begin_suppress_tokens=[first])
    proposing = GenerationConfig(strategy="greedy", max_new_tokens=12, stop_at_newline=False, propose=True)
    got = [seqs[0] for seqs in model.generate_ids(prompts, 1, proposing)]
    assert got == expected
    assert all(seq and seq[0] != first for seq in got)
    assert got[0] != model.generate_ids(prompts[:1], 1, plain)[0][0]  # the first query did change
    model.top_k = 0  # full logits on the host
    assert [seqs[0] for seqs in model.generate_ids(prompts, 1, proposing)] == expected
    one = load_model(tiny_export, warmup=False)
    one._none_id = first
    assert [one.generate_ids([p], 1, proposing)[0][0] for p in prompts] == expected  # batch of one: lookahead path


def test_list_decoding_ends_a_row_whose_first_token_is_none(tiny_export):
    """A list that starts with ``none`` is the model's "no rewrite": the row ends there, in a batch
    (where the other rows go on exactly as before) and alone (the lookahead path). The tiny model
    never says ``none``, so its first greedy token for the first query plays that part."""
    prompts = [rewrite_prompt(q) for q in QUERIES]
    model = load_model(tiny_export, warmup=False)
    listing = GenerationConfig(strategy="greedy", max_new_tokens=12)
    before = [seqs[0] for seqs in model.generate_ids(prompts, 1, listing)]
    first = before[0][0]
    assert len(before[0]) > 1  # without the rule the first row goes on
    model._none_id = first  # "none" for this test
    after = [seqs[0] for seqs in model.generate_ids(prompts, 1, listing)]
    assert after == [[first] if seq[0] == first else seq for seq in before]
    assert [model.generate_ids([p], 1, listing)[0][0] for p in prompts] == after  # batch of one: lookahead path
    plain = GenerationConfig(strategy="greedy", max_new_tokens=12, stop_at_newline=False)
    assert len(model.generate_ids(prompts[:1], 1, plain)[0][0]) > 1  # only list decoding reads `none` as the answer


def test_one_model_is_safe_to_share_between_threads(tiny_runtime):
    expected_rewrites = {q: tiny_runtime.generate([q], 3)[0] for q in QUERIES}
    expected_tags = {q: tiny_runtime.tag([(q, "laptop")])[0] for q in QUERIES}

    def work(i: int):
        q = QUERIES[i % len(QUERIES)]
        return q, tiny_runtime.generate([q], 3)[0], tiny_runtime.tag([(q, "laptop")])[0]

    with ThreadPoolExecutor(max_workers=6) as pool:
        for q, rewrites, tags in pool.map(work, range(36)):
            assert rewrites == expected_rewrites[q]
            assert tags == pytest.approx(expected_tags[q], abs=1e-6)


def test_batches_larger_than_batch_size_are_split(tiny_export, tiny_runtime):
    small = load_model(tiny_export, batch_size=2, warmup=False)
    prompts = [rewrite_prompt(q) for q in QUERIES]
    config = GenerationConfig(strategy="beam")
    assert small.generate_ids(prompts, 3, config) == tiny_runtime.generate_ids(prompts, 3, config)


# -- the folder contract ----------------------------------------------------------------------


@pytest.fixture()
def folder_copy(tiny_export, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_export, tmp_path / "copy"))


def _edit_manifest(folder: Path, **changes) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: shutil.rmtree(f), "model folder not found"),
        (lambda f: (f / "manifest.json").unlink(), "manifest.json is missing"),
        (lambda f: (f / "manifest.json").write_text("{not json"), "is corrupt (not valid JSON"),
        (lambda f: _edit_manifest(f, prompt_version="qrw-prompt-0"), "exported for prompt template 'qrw-prompt-0'"),
        (lambda f: _edit_manifest(f, format_version=99), "format_version 99"),
        (lambda f: _edit_manifest(f, pad_token_id=None, tags=None) or _drop_key(f, "tags"), "lacks the fields ['tags']"),
        (lambda f: (f / "model.onnx").unlink(), "model.onnx is missing"),
        (lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json is missing"),
        (lambda f: _truncate(f / "model.onnx"), "is corrupt"),
        (lambda f: _garble_same_size(f / "model.onnx"), "cannot open"),
        (lambda f: _swap_tag_id(f), "encodes tag"),
    ],
    ids=["no-folder", "no-manifest", "bad-json", "prompt-version", "format-version", "missing-field", "no-model", "no-tokenizer", "truncated", "garbled", "tag-ids"],
)
def test_broken_folders_fail_with_a_clear_error(folder_copy, breakage, message):
    breakage(folder_copy)
    with pytest.raises(ModelFolderError, match=None) as info:
        load_model(folder_copy, warmup=False)
    assert message in str(info.value)


def _drop_key(folder: Path, key: str) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data.pop(key)
    path.write_text(json.dumps(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _garble_same_size(path: Path) -> None:
    path.write_bytes(b"\x00garbage" * (path.stat().st_size // 8) + b"\x00" * (path.stat().st_size % 8))


def _swap_tag_id(folder: Path) -> None:
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data["tags"][0]["id"], data["tags"][1]["id"] = data["tags"][1]["id"], data["tags"][0]["id"]
    path.write_text(json.dumps(data))


def test_verify_hash_catches_a_changed_model(folder_copy):
    data = bytearray((folder_copy / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (folder_copy / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFolderError, match="model_hash"):
        load_model(folder_copy, verify_hash=True, warmup=False)


def test_serving_files_are_configuration_that_calibration_may_rewrite(folder_copy):
    """``qrw train calibrate`` rewrites serving.yaml and calibration.json inside an export; the
    manifest must not pin them (exports made before this listed serving.yaml's size: still loads)."""
    files = json.loads((folder_copy / "manifest.json").read_text())["files"]
    assert "model.onnx" in files and "serving.yaml" not in files and "calibration.json" not in files
    _edit_manifest(folder_copy, files={**files, "serving.yaml": 7})  # as an older export recorded it
    (folder_copy / "serving.yaml").write_text("gate: {keep_min: 0.3, down_weight: 0.5}\n")
    assert load_model(folder_copy, warmup=False).generate(["laptop"], 2) is not None
    (folder_copy / "serving.yaml").unlink()  # and a folder without one is complete
    assert load_model(folder_copy, warmup=False) is not None
    _truncate(folder_copy / "tokenizer.json")  # model files are still checked
    with pytest.raises(ModelFolderError, match="is corrupt"):
        load_model(folder_copy, warmup=False)


def test_provider_choice_follows_manifest_and_installation(caplog):
    import onnxruntime

    assert select_providers("cpu") == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with caplog.at_level(logging.WARNING, logger="qrw.plugin.runtime"):
            assert select_providers("cuda") == ["CPUExecutionProvider"]
        assert "not available" in caplog.text
        with pytest.raises(ModelFolderError, match="not available"):
            select_providers("cpu", "CUDAExecutionProvider")


def test_runtime_never_imports_torch_or_transformers(tiny_export):
    script = textwrap.dedent(
        f"""
        import sys
        from qrw.plugin.runtime import load_model
        model = load_model({str(tiny_export)!r})
        model.generate(["laptop"], 2)
        model.tag([("laptop", "notebook")])
        heavy = sorted(m for m in ("torch", "transformers", "optimum") if m in sys.modules)
        print("HEAVY=" + ",".join(heavy))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "HEAVY=\n" in result.stdout, result.stdout
