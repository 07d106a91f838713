"""Model FLOPs utilisation (MFU) of XLM-R Large forward + backward on a GPU, and the paper
grid's cost from first principles.

    python benchmarks/gpu_mfu.py                 # on a CUDA GPU: measure; elsewhere: say it skipped (exit 0)
    python benchmarks/gpu_mfu.py --quick         # fewer timed steps
    python benchmarks/gpu_mfu.py --paper-costs   # the arithmetic in BENCHMARKS.md (no GPU needed)

Measurement: XLM-R Large built from its published config (random weights, nothing downloaded)
with a sequence-classification head, bf16 weights, SDPA attention, micro batch 32 x 256 tokens
(the paper's classification setting) on one GPU; forward + backward timed over ``--steps`` steps
after ``--warmup``, with CUDA synchronisation around the timed region.

FLOPs (first principles, per token, forward + backward = 3 x forward):
    6 x N_matmul            weights a token is multiplied by: 24 layers x 12 h^2 (QKV + output
                            projection 4 h^2, feed-forward 2 x 4 h^2) = 302.0M for h = 1024;
                            the 256M-parameter embedding is a lookup, not a matmul
  + 12 x L x s x h          attention scores and their weighted sum (QK^T and AV: 2 x 2 s h per
                            token per layer forward)
MFU = achieved FLOP/s / the GPU's dense bf16 peak (H100 SXM 989 TFLOP/s; ``--peak-tflops`` otherwise).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

# XLM-R Large's published config (FacebookAI/xlm-roberta-large config.json).
XLMR_LARGE = {
    "vocab_size": 250002, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
    "intermediate_size": 4096, "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5,
    "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
}
DENSE_BF16_PEAK_TFLOPS = {"H100 SXM": 989.0, "H100 PCIe": 756.0, "H100 NVL": 835.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}
H100_PEAK = 989e12
TARGET_MFU = 0.5


def matmul_params(hidden: int = 1024, layers: int = 24, intermediate: int = 4096) -> int:
    """Weights every token is multiplied by in the encoder (biases, LayerNorm and the
    CLS-only head are < 0.2% and left out)."""
    return layers * (4 * hidden * hidden + 2 * hidden * intermediate)


def flops_per_token(seq_len: int, hidden: int = 1024, layers: int = 24, intermediate: int = 4096) -> float:
    """Training (forward + backward) FLOPs per token at sequence length ``seq_len``."""
    return 6 * matmul_params(hidden, layers, intermediate) + 12 * layers * seq_len * hidden


# ------------------------------------------------------------------ the paper grid on paper


@dataclass(frozen=True)
class PhaseCost:
    name: str
    examples: int          # training examples (for QA: ~ features, most contexts fit one window)
    sequences: int         # sequences per example (multiple choice: one per option)
    seq_len: int
    epochs: float
    batch: int

    @property
    def tokens_per_epoch(self) -> int:
        return self.examples * self.sequences * self.seq_len  # padded to the maximum length, as jiant does

    @property
    def flops_per_epoch(self) -> float:
        return self.tokens_per_epoch * flops_per_token(self.seq_len)

    def seconds_per_epoch(self, peak: float = H100_PEAK, mfu: float = TARGET_MFU) -> float:
        return self.flops_per_epoch / (peak * mfu)


# Training-set sizes from the public releases (GLUE, SNLI, ANLI, SQuAD, HellaSwag,
# CommonsenseQA, Cosmos QA, CCGbank sections 02-21; XTREME paper Table 1 for the targets).
# Intermediate epochs are not in REFERENCES.md: assumed = the target recipe (2 epochs; see BENCHMARKS.md).
INTERMEDIATE = [
    PhaseCost("ANLI+ (ANLI r1-3 + SNLI + MNLI)", 162_865 + 550_152 + 392_702, 1, 256, 2, 32),
    PhaseCost("CCG (CCGbank)", 39_604, 1, 256, 2, 32),
    PhaseCost("CommonsenseQA (5 options)", 9_741, 5, 256, 2, 32),
    PhaseCost("Cosmos QA (4 options)", 25_262, 4, 256, 2, 32),
    PhaseCost("HellaSwag (4 options)", 39_905, 4, 256, 2, 32),
    PhaseCost("MNLI", 392_702, 1, 256, 2, 32),
    PhaseCost("QQP", 363_846, 1, 256, 2, 32),
    PhaseCost("SQuAD v2.0", 130_319, 1, 384, 2, 16),
    PhaseCost("SST-2", 67_349, 1, 256, 2, 32),
]
TARGETS = [
    PhaseCost("XNLI (MNLI train)", 392_702, 1, 256, 2, 32),
    PhaseCost("PAWS-X (en)", 49_401, 1, 256, 5, 32),
    PhaseCost("UD-POS (en)", 21_253, 1, 256, 10, 32),
    PhaseCost("PAN-X (en)", 20_000, 1, 256, 10, 32),
    PhaseCost("XQuAD (SQuAD v1.1)", 87_599, 1, 384, 2, 16),
    PhaseCost("MLQA (SQuAD v1.1)", 87_599, 1, 384, 2, 16),
    PhaseCost("TyDiQA-GoldP (en)", 3_696, 1, 384, 2, 16),
]
SEEDS = 3
SETTINGS_WITH_BASELINE = len(INTERMEDIATE) + 1  # each intermediate task + no intermediate phase


def paper_costs() -> str:
    lines = [
        f"FLOPs per token (fwd+bwd): s=256: 6 x {matmul_params() / 1e6:.2f}M + 12 x 24 x 256 x 1024 = "
        f"{flops_per_token(256) / 1e9:.4f} GFLOP; s=384: {flops_per_token(384) / 1e9:.4f} GFLOP",
        f"one step, batch 32 x 256: {32 * 256 * flops_per_token(256) / 1e12:.2f} TFLOP "
        f"({32 * 256 * flops_per_token(256) / (H100_PEAK * TARGET_MFU) * 1e3:.1f} ms at 50% of 989 TFLOP/s); "
        f"batch 16 x 384: {16 * 384 * flops_per_token(384) / 1e12:.2f} TFLOP",
        "",
        "| phase | examples x seq | tokens/epoch | PFLOP/epoch | min/epoch (1 H100, 50% MFU) | epochs | GPU-h per phase |",
        "|---|---|---|---|---|---|---|",
    ]
    totals = {}
    for kind, phases in (("intermediate", INTERMEDIATE), ("target", TARGETS)):
        total = 0.0
        for p in phases:
            seconds = p.seconds_per_epoch()
            total += seconds * p.epochs
            shape = f"{p.examples:,}" + (f" x {p.sequences} options" if p.sequences > 1 else "") + f" x {p.seq_len}"
            lines.append(
                f"| {kind}: {p.name} | {shape} | {p.tokens_per_epoch / 1e6:,.1f}M | {p.flops_per_epoch / 1e15:,.1f} | "
                f"{seconds / 60:,.1f} | {p.epochs:g} | {seconds * p.epochs / 3600:.2f} |"
            )
        totals[kind] = total
    intermediate_h = totals["intermediate"] * SEEDS / 3600
    target_h = totals["target"] * SETTINGS_WITH_BASELINE * SEEDS / 3600
    grid = intermediate_h + target_h
    critical = max(p.seconds_per_epoch() * p.epochs for p in INTERMEDIATE) + max(p.seconds_per_epoch() * p.epochs for p in TARGETS)
    lines += [
        "",
        f"one pass of all intermediate phases: {totals['intermediate'] / 3600:.2f} GPU-h; of all 7 target phases: {totals['target'] / 3600:.2f} GPU-h",
        f"grid = {len(INTERMEDIATE)} intermediate x {SEEDS} seeds ({len(INTERMEDIATE) * SEEDS} phases): {intermediate_h:.1f} GPU-h"
        f" + ({len(INTERMEDIATE)} + 1 none) x {len(TARGETS)} targets x {SEEDS} seeds ({SETTINGS_WITH_BASELINE * len(TARGETS) * SEEDS} phases): "
        f"{target_h:.1f} GPU-h = {grid:.1f} GPU-h at 50% MFU",
        f"wall clock at the same MFU: 8 GPUs {grid / 8:.1f} h, 32 GPUs {grid / 32:.1f} h "
        f"(longest chain, ANLI+ then XNLI on one GPU: {critical / 3600:.2f} h; on 4 GPUs per phase: {critical / 4 / 3600:.2f} h)",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ the measurement


def peak_flops(name: str, override: float | None) -> tuple[float, str]:
    if override:
        return override * 1e12, f"--peak-tflops {override:g}"
    upper = name.upper()
    if "H100" in upper:
        variant = "H100 PCIe" if "PCIE" in upper else "H100 NVL" if "NVL" in upper else "H100 SXM"
        return DENSE_BF16_PEAK_TFLOPS[variant] * 1e12, variant
    for key in ("H200", "A100", "L40S"):
        if key in upper:
            return DENSE_BF16_PEAK_TFLOPS[key] * 1e12, key
    raise SystemExit(f"unknown GPU {name!r}: pass --peak-tflops (its dense bf16 peak)")


def measure(args) -> int:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak, peak_source = peak_flops(name, args.peak_tflops)
    config = XLMRobertaConfig(**XLMR_LARGE, num_labels=3, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = XLMRobertaForSequenceClassification(config).to(device=device, dtype=torch.bfloat16).train()
    params = sum(p.numel() for p in model.parameters())
    input_ids = torch.randint(5, config.vocab_size, (args.batch, args.seq), device=device)
    labels = torch.randint(0, 3, (args.batch,), device=device)
    attention_mask = torch.ones_like(input_ids)

    def step() -> None:
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / args.steps
    tokens = args.batch * args.seq
    model_flops = tokens * flops_per_token(args.seq)
    naive_flops = 6 * params * tokens
    print(f"GPU: {name} (peak {peak / 1e12:.0f} TFLOP/s dense bf16, {peak_source})")
    print(f"XLM-R Large: {params / 1e6:.1f}M parameters ({matmul_params() / 1e6:.1f}M in per-token matmuls); "
          f"micro batch {args.batch} x {args.seq} = {tokens:,} tokens, bf16, SDPA")
    print(f"forward+backward: {seconds * 1e3:.1f} ms/step over {args.steps} steps ({tokens / seconds:,.0f} tokens/s)")
    print(f"model FLOPs/step {model_flops / 1e12:.2f} TFLOP -> {model_flops / seconds / 1e12:.1f} TFLOP/s, MFU {model_flops / seconds / peak * 100:.1f}%")
    print(f"(counting 6 x all {params / 1e6:.0f}M parameters instead would claim {naive_flops / seconds / peak * 100:.1f}%: "
          f"the embedding is a lookup, not a matmul)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not a known one")
    parser.add_argument("--quick", action="store_true", help="3 warm-up and 10 timed steps")
    parser.add_argument("--paper-costs", action="store_true", help="print the paper grid's cost arithmetic and exit")
    args = parser.parse_args(argv)
    if args.paper_costs:
        print(paper_costs())
        return 0
    if args.quick:
        args.warmup, args.steps = 3, 10
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_mfu: skipped: no CUDA GPU here (torch {torch.__version__}); nothing measured. "
              "`--paper-costs` prints the first-principles estimate.")
        return 0
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
