"""The GPU kit on CPU: prepare it (without wheels), stage its calls, and run the device script's training on the
tiny model; what comes back loads as an adapter and writes rewrites."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from qrw.trainer.gpu_kit import MIB, cut, prepare, spread

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.opensearch  # the shared data fixture measures candidates against the node


def test_parts_and_calls_stay_within_their_limits(tmp_path):
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(int(2.5 * MIB)))
    parts = cut(blob, tmp_path, MIB)
    assert [p.stat().st_size for p in parts] == [MIB, MIB, MIB // 2]
    assert b"".join(p.read_bytes() for p in parts) == blob.read_bytes()
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * (MIB // 4))
    calls = spread([*parts, small], int(1.5 * MIB))
    assert all(sum(p.stat().st_size for p in call) <= 1.5 * MIB for call in calls) and len(calls) == 2
    with pytest.raises(ValueError, match="larger than one call"):
        spread([blob], MIB)


def test_the_kit_trains_on_cpu_and_returns_an_adapter(built_data, tiny_model_dir, data_dir, tmp_path):
    config, _ = built_data
    fake_gguf = tmp_path / "base.gguf"  # the dry run trains the tiny model; the GGUF is only carried and reassembled
    fake_gguf.write_bytes(os.urandom(3 * MIB))
    kit = tmp_path / "kit"
    calls = prepare(REPO, kit, Path(config.output_dir), Path(data_dir), fake_gguf, python_version="3.12",
                    call_mib=4.0, minutes=1.0, wheels=False)
    assert len(calls) >= 2 and all(sum(f.stat().st_size for f in call) <= 4 * MIB for call in calls)
    plan = (kit / "PLAN.md").read_text()
    assert f"call {len(calls)} of {len(calls)}" in plan and "gpu_kit_run.sh train 1" in plan
    for line in plan.splitlines():
        if line.startswith("* command:"):
            assert len(line) < 2000  # the device tool takes commands of at most 2,000 characters

    env = {**os.environ, "QRW_KIT": str(tmp_path / "device"), "OUT": str(tmp_path / "out"), "PYTHON": sys.executable,
           "QRW_KIT_SKIP_INSTALL": "1", "QRW_KIT_DEVICE": "cpu", "QRW_KIT_MODEL": str(tiny_model_dir), "QRW_KIT_STEPS": "2"}
    for i in range(1, len(calls) + 1):
        subprocess.run(["bash", "trainer/gpu_kit_run.sh", "stage", str(kit / f"call-{i}")], cwd=REPO, env=env,
                       check=True, capture_output=True)
    run = subprocess.run(["bash", "trainer/gpu_kit_run.sh", "train", "1"], cwd=REPO, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (tmp_path / "device" / "work" / "base.gguf").read_bytes() == fake_gguf.read_bytes()

    parts = sorted((tmp_path / "out").glob("result.tgz.part-*"))
    assert parts and all(p.stat().st_size <= 15 * MIB for p in parts)
    back = tmp_path / "back"
    back.mkdir()
    (back / "result.tgz").write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(back / "result.tgz") as tar:
        tar.extractall(back, filter="data")
    adapter = back / "result" / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_model_dir)
    assert json.loads((back / "result" / "sft" / "training_card.json").read_text())["steps"] == 2
    assert json.loads((back / "result" / "grpo" / "training_card.json").read_text())["stage"] == "grpo"

    from qrw.trainer.model import TorchRewriteModel

    model = TorchRewriteModel(adapter, strategy="greedy")
    rewrites = model.generate(["usb stick"], 2)
    assert isinstance(rewrites, list) and len(rewrites) == 1
