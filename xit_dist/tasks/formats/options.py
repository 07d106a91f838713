"""The featurisation and decoding settings every task format reads (one object for all formats)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class FormatOptions(BaseModel):
    """Settings a task format reads when it featurises and predicts. One object for every
    format, so that jobs, caches and hashes never need to know which format is in use."""

    max_seq_length: int = 256
    doc_stride: int = 128              # extractive QA: overlap of the windows over a long context
    max_query_length: int = 64         # extractive QA: question tokens kept
    n_best: int = 20                   # extractive QA: start/end candidates per window
    max_answer_length: int = 30        # extractive QA: longest answer span, in tokens
    retrieval_layer: int | None = None  # retrieval: hidden_states index; None = XTREME's 14 of 24, scaled to depth
    pooling: Literal["mean", "cls"] = "mean"
