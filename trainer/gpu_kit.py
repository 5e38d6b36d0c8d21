"""A kit for training on a lent GPU machine that has no registry access and a size limit per transfer.

Why: this project's GPU machines (the workplace's ``device`` tool) are lent for 15 minutes in all,
cannot reach a package registry, receive at most 64 MiB per call (the working tree included) and
send back at most 16 MiB per file. Their image holds torch, accelerate and peft, but transformers at
5.x, no trl, no pydantic and no base model. So everything else travels with the checkout, in parts,
and the run is one prepared script (``trainer/gpu_kit_run.sh``) that trains a LoRA adapter (10-20 MB,
which can come back; a full fine-tune could not) under a time cap (``max_minutes``), so it ends with a
saved adapter, not a killed process.

``prepare`` (here, with registry access) writes ``.gpu/`` (git-ignored):

* ``wheels/``: the pinned wheels of the training stack for the device's Python (``--python-version``,
  3.12 there), installed there with ``pip --no-index --no-deps --target`` ahead of its own packages;
* ``data.tar.xz``: a ``qrw train data`` folder (the same measured-gain data the shipped model was trained
  on, so the GPU run differs only in compute); ``icecat.tar.xz``: the catalog the rewards search;
* ``base.gguf``: the SmolLM2 GGUF (98 MB);
* every file above cut into parts (``NAME.part-NNN``, reassembled with ``cat`` there);
* ``call-1/`` … ``call-N/``: the above spread so that each call carries at most ``--call-mib``;
* ``PLAN.md``: the device calls to make, in order, with their carry lists and commands.

Then, here again: reassemble the returned ``result.tgz`` parts (the adapter and the training cards),
export, calibrate and evaluate the adapter as any other (``PLAN.md`` says how).

    .venv/bin/python -m qrw.trainer.gpu_kit --data-dir runs/v2/data
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

MIB = 1 << 20

WHEELS: tuple[str, ...] = (
    # the training stack at this project's pins (pyproject.toml, extra `train`); the device has other versions or none
    "transformers==4.57.6", "huggingface-hub==0.36.2", "tokenizers==0.22.2", "trl==1.16.0", "datasets==5.0.1",
    "peft==0.21.2", "gguf==0.19.0", "bm25s==0.3.16", "pystemmer==3.1.0",
    # what qrw itself needs and the device image lacks
    "pydantic==2.14.4", "pydantic-core==2.50.5", "annotated-types==0.8.0", "typing-inspection==0.4.5",
    "click==8.5.1", "opensearch-py==3.2.0", "events==0.5", "opensearch-protobufs==1.2.0", "orjson==3.13.0",
    "dill==0.4.1", "multiprocess==0.70.19",
)
"""Pinned wheels the device needs (checked against its package list in ``.library/device/KINDS.md``)."""

PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")


def download_wheels(target: Path, python_version: str) -> list[Path]:
    """Fetch every wheel of ``WHEELS`` for CPython ``python_version`` on x86-64 Linux (no dependencies resolved)."""
    target.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp", "-d", str(target)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    subprocess.run([*command, *WHEELS], check=True)
    return sorted(target.glob("*.whl"))


def pack(source: Path, archive: Path, arcname: str) -> Path:
    """``source`` as a tar named ``arcname`` inside: xz-compressed for ``.tar.xz``, plain for ``.tar`` (wheels are
    zip files already; xz would spend most of the kit's preparation time to save almost nothing)."""
    with tarfile.open(archive, "w:xz" if archive.name.endswith(".xz") else "w") as tar:
        tar.add(source, arcname=arcname)
    return archive


def cut(path: Path, target_dir: Path, part_bytes: int) -> list[Path]:
    """``path`` cut into parts of at most ``part_bytes`` (``NAME.part-000``, …), reassembled by ``cat``."""
    parts = []
    with path.open("rb") as handle:
        index = 0
        while chunk := handle.read(part_bytes):
            part = target_dir / f"{path.name}.part-{index:03d}"
            part.write_bytes(chunk)
            parts.append(part)
            index += 1
    return parts


def spread(files: list[Path], budget_bytes: int) -> list[list[Path]]:
    """Files grouped into calls of at most ``budget_bytes`` each, largest first (first fit)."""
    calls: list[list[Path]] = []
    sizes: list[int] = []
    for path in sorted(files, key=lambda p: -p.stat().st_size):
        size = path.stat().st_size
        if size > budget_bytes:
            raise ValueError(f"{path.name} ({size / MIB:.1f} MiB) is larger than one call's budget ({budget_bytes / MIB:.1f} MiB)")
        for i, used in enumerate(sizes):
            if used + size <= budget_bytes:
                calls[i].append(path)
                sizes[i] += size
                break
        else:
            calls.append([path])
            sizes.append(size)
    return calls


def tree_bytes(repo: Path) -> int:
    """What the device tool sends besides the carried paths: tracked and untracked-but-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            check=True, capture_output=True).stdout.split(b"\0")
    return sum((repo / os.fsdecode(name)).stat().st_size for name in listed if name and (repo / os.fsdecode(name)).is_file())


def plan_text(calls: list[list[Path]], kit: Path, repo: Path, minutes: float) -> str:
    rel = kit.relative_to(repo) if kit.is_relative_to(repo) else kit  # the device tool carries paths inside the checkout
    lines = ["# GPU kit: the device calls, in order", "",
             "Make the calls one right after another: the machine stays warm only about 30 s between calls, and",
             "the parts copied by the earlier calls live in its /tmp. Each call's files go to /tmp/qrw-kit there.", ""]
    for i, files in enumerate(calls, 1):
        last = i == len(calls)
        command = f"bash trainer/gpu_kit_run.sh stage {rel}/call-{i}" + (f" && bash trainer/gpu_kit_run.sh train {minutes:g}" if last else "")
        size = sum(f.stat().st_size for f in files) / MIB
        lines += [f"## call {i} of {len(calls)} ({size:.1f} MiB carried)", "",
                  f"* carry: `[\"{rel}/call-{i}\"]`", f"* command: `{command}`",
                  f"* timeout_s: {600 if last else 120}", ""]
    lines += ["## Back here", "",
              "The last call returns `result.tgz` in parts of 15 MiB (16 MiB a file at most come back): the adapter",
              "and both training cards. FILES_AT is the folder the tool names in its reply.", "",
              "```bash",
              "mkdir -p runs/gpu && cat FILES_AT/result.tgz.part-* | tar xz -C runs/gpu   # runs/gpu/result/{adapter,sft,grpo}",
              ".venv/bin/qrw-export --model runs/gpu/result/adapter --out runs/gpu/export --target cpu --quiet",
              ".venv/bin/qrw train calibrate --model runs/gpu/export --data-dir runs/v2/data",
              ".venv/bin/qrw eval --judgments ../shared/data/icecat/judgments/judgments.csv --split runs/v2/data/split.json "
              "--fold train --systems original,ungated,gated --model runs/gpu/export --json runs/gpu/compare_train.json",
              "```", ""]
    return "\n".join(lines)


def prepare(repo: Path, kit: Path, data_dir: Path, catalog_dir: Path, gguf: Path, *, python_version: str,
            call_mib: float, minutes: float, wheels: bool = True) -> list[list[Path]]:
    """Write the kit (see the module docstring); return the files of each call."""
    staging = kit / "staging"
    if kit.exists():
        shutil.rmtree(kit)
    staging.mkdir(parents=True)
    files: list[Path] = []
    if wheels:
        wheel_dir = staging / "wheels"
        download_wheels(wheel_dir, python_version)
        files += [pack(wheel_dir, staging / "wheels.tar", "wheels")]
    files.append(pack(data_dir, staging / "data.tar.xz", "data"))
    files.append(pack(catalog_dir, staging / "icecat.tar.xz", "icecat"))
    files.append(shutil.copyfile(gguf, staging / "base.gguf"))
    budget = int(call_mib * MIB)
    part_bytes = budget
    parts = []
    for path in files:  # every file travels as NAME.part-NNN, reassembled by `cat` on the device
        parts += cut(path, staging, part_bytes)
        path.unlink()
    calls = spread(parts, budget)
    for i, group in enumerate(calls, 1):
        folder = kit / f"call-{i}"
        folder.mkdir()
        for path in group:
            path.rename(folder / path.name)
    shutil.rmtree(staging)
    calls = [sorted((kit / f"call-{i}").iterdir()) for i in range(1, len(calls) + 1)]
    (kit / "PLAN.md").write_text(plan_text(calls, kit, repo, minutes), encoding="utf-8")
    return calls


def main(argv: list[str] | None = None) -> int:
    from qrw.search.catalog import default_data_dir
    from qrw.trainer.base_model import smollm2_gguf_path

    repo = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kit", type=Path, default=repo / ".gpu", help="where the kit goes (git-ignored)")
    parser.add_argument("--data-dir", type=Path, default=repo / "runs" / "v2" / "data", help="a `qrw train data` folder")
    parser.add_argument("--python-version", default="3.12", help="the device's Python (KINDS.md: 3.12)")
    parser.add_argument("--minutes", type=float, default=6.0,
                        help="training budget on the device, SFT and GRPO together (the last call also installs, loads "
                             "and tokenises, about 2 minutes, within the tool's 10 minutes a call)")
    parser.add_argument("--call-mib", type=float, default=None,
                        help="MiB carried per call (default: 64 minus the working tree, minus 2 of margin)")
    parser.add_argument("--no-wheels", action="store_true", help="leave the wheels out (a CPU dry run of the kit)")
    args = parser.parse_args(argv)
    call_mib = args.call_mib or (64 - tree_bytes(repo) / MIB - 2)
    calls = prepare(repo, args.kit.resolve(), args.data_dir.resolve(), default_data_dir().resolve(), smollm2_gguf_path(),
                    python_version=args.python_version, call_mib=call_mib, minutes=args.minutes, wheels=not args.no_wheels)
    for i, files in enumerate(calls, 1):
        print(f"call {i}: " + ", ".join(f"{f.name} ({f.stat().st_size / MIB:.1f} MiB)" for f in files))
    print(f"plan: {args.kit / 'PLAN.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
