"""The benchmark scripts parse their arguments, the GPU one skips cleanly on a CPU machine, and
the first-principles arithmetic quoted in BENCHMARKS.md holds. Nothing here is timed: the
benchmarks themselves run by hand (``python benchmarks/<name>.py``), never in the test suite."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = ("training_loop", "zero_memory", "eval_throughput", "caching", "grid_scaling", "gpu_mfu")


def load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize("name", SCRIPTS)
def test_each_script_parses_its_arguments(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load(name).main(["--help"])
    assert exit_info.value.code == 0
    assert "--quick" in capsys.readouterr().out


def test_gpu_mfu_skips_on_cpu_and_says_so(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the script measures instead of skipping")
    assert load("gpu_mfu").main([]) == 0
    assert "skipped: no CUDA GPU" in capsys.readouterr().out


def test_flops_per_token_as_derived_in_benchmarks_md():
    mfu = load("gpu_mfu")
    # 24 layers x 12 x 1024^2 weights per token; attention 12 x 24 x 256 x 1024
    assert mfu.matmul_params() == 301_989_888
    assert mfu.flops_per_token(256) == 6 * 301_989_888 + 12 * 24 * 256 * 1024 == 1_887_436_800
    mnli_epoch = next(p for p in mfu.TARGETS if p.name.startswith("XNLI"))
    # 392,702 x 256 tokens x 1.8874 GFLOP / (0.5 x 989 TFLOP/s) = 383.7 s
    assert mnli_epoch.seconds_per_epoch() == pytest.approx(383.7, abs=0.1)


def test_steady_state_leaves_out_the_warm_up_steps():
    common = load("_common")
    times = [0.0, 5.0, 6.0, 7.0, 8.0]  # first step slow: warm-up
    assert common.steady_samples_per_s(times, warmup=1, global_batch=16) == pytest.approx(3 * 16 / 3.0)
    with pytest.raises(ValueError):
        common.steady_samples_per_s(times[:2], warmup=1, global_batch=16)


def test_loop_report_pairs_xit_dist_with_each_contender_within_a_repetition():
    """The decomposition table: xit-dist's ratio to every other contender that ran, paired per
    repetition (medians of ratios, not ratios of medians)."""
    loop = load("training_loop")
    args = argparse.Namespace(repeats=2, stages=[1], contenders=["xit-dist", "deepspeed", "deepspeed-in-ray"])
    speeds = {("xit-dist", 0): 30.0, ("deepspeed", 0): 40.0, ("deepspeed-in-ray", 0): 30.0,
              ("xit-dist", 1): 20.0, ("deepspeed", 1): 20.0, ("deepspeed-in-ray", 1): 25.0}
    measurements = [
        {"contender": name, "stage": 1, "rep": rep, "samples_per_s": value, "samples_per_cpu_s": value / 2, "startup_s": 9.0}
        for (name, rep), value in speeds.items()
    ]
    wall = loop.report(measurements, args).split("samples per CPU-second")[0]
    head, _, row = [line for line in wall.splitlines() if line.startswith("|")][:3]
    assert [cell.strip() for cell in head.strip("|").split("|")] == [
        "stage", "xit-dist", "deepspeed", "deepspeed-in-ray", "xit/deepspeed", "xit/deepspeed-in-ray"]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1:4] == ["25.00", "30.00", "27.50"]            # medians over the two repetitions
    assert cells[4].startswith("0.88x (0.75-1.00)")             # 30/40 and 20/20
    assert cells[5].startswith("0.90x (0.80-1.00)")             # 30/30 and 20/25
