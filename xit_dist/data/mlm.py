"""Masked-language-modelling text for a stage that mixes continued multilingual MLM into its
intermediate training (Study 1; the paper's "continued multilingual MLM" alternative).

Text comes from local files (``.txt``: one example per line; ``.jsonl`` / ``.parquet`` with a
``text`` column), from the demo's multilingual corpus (``corpus: builtin:demo``, the sentences
the built-in tokenizer was trained on, in every demo language), or from a hub corpus
(``hub: {id, config, split, column}``, read with ``datasets.load_dataset``; not exercised
offline here). Each line is one example, truncated to ``max_seq_length`` tokens; masking is
transformers' ``DataCollatorForLanguageModeling`` (15% of tokens: 80% <mask>, 10% random,
10% kept), drawing from torch's global generator so that a checkpoint's saved RNG state makes
resumed masks identical.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from xit_dist.errors import DataError

MLM_VERSION = "1"
MEMBER_NAME = "mlm"  # the MLM member's name in a mixture (metrics, progress records)
TEXT_READERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class HubCorpus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    config: str | None = None
    split: str = "train"
    column: str = "text"
    revision: str | None = None


class MlmOptions(BaseModel):
    """A stage's ``mlm:`` block: where the text is and how much of training it gets."""

    model_config = ConfigDict(extra="forbid")

    files: list[str] = Field(default_factory=list, description=".txt (one example per line), .jsonl/.parquet with 'text'")
    corpus: str | None = Field(None, description="'builtin:demo': the demo's multilingual sentences")
    hub: HubCorpus | None = None
    probability: float = Field(0.15, gt=0, lt=1, description="share of tokens masked")
    weight: float | None = Field(
        None, gt=0, lt=1, description="share of optimizer steps spent on MLM; default: the stage's sampling over sizes"
    )
    max_lines: int | None = Field(None, gt=0, description="first N lines of the text")

    @model_validator(mode="after")
    def _one_source(self) -> "MlmOptions":
        given = [name for name, value in (("files", self.files), ("corpus", self.corpus), ("hub", self.hub)) if value]
        if len(given) != 1:
            raise ValueError(f"give exactly one of files, corpus, hub (got {given or 'none'})")
        if self.corpus is not None and self.corpus != "builtin:demo":
            raise ValueError(f"corpus: unknown {self.corpus!r}; known: builtin:demo")
        for name in self.files:
            path = Path(name).expanduser()
            if not path.is_file():
                raise ValueError(f"files: not found: {name}")
            if path.suffix not in TEXT_READERS:
                raise ValueError(f"files: {name}: expected one of {sorted(TEXT_READERS)}")
        return self


def demo_corpus_file() -> Path:
    """The demo's multilingual corpus as a text file in the asset cache (built once)."""
    from xit_dist.builtin.assets import cache_root
    from xit_dist.builtin.demo_data import demo_corpus, generator_version
    from xit_dist.builtin.publish import publish_once

    root = cache_root() / "data" / "demo-mlm"

    def build(directory: Path) -> dict:
        lines = demo_corpus()
        (directory / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return {"lines": len(lines)}

    publish_once(root, marker="MANIFEST.json", identity={"corpus_version": generator_version()}, build=build)
    return root / "corpus.txt"


def resolved(options: MlmOptions) -> MlmOptions:
    """The options a worker gets: absolute file paths; the demo corpus as its file."""
    if options.corpus == "builtin:demo":
        return options.model_copy(update={"corpus": None, "files": [str(demo_corpus_file())]})
    return options.model_copy(update={"files": [str(Path(f).expanduser().resolve()) for f in options.files]})


def corpus_rows(options: MlmOptions):
    """A `datasets.Dataset` with one column ``text``, empty lines removed."""
    import datasets

    if options.hub is not None:
        hub = options.hub
        try:
            rows = datasets.load_dataset(hub.id, hub.config, split=hub.split, revision=hub.revision)
        except Exception as err:
            raise DataError(f"mlm.hub {hub.id}: cannot load: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from None
        if hub.column not in rows.column_names:
            raise DataError(f"mlm.hub {hub.id}: no column {hub.column!r} (columns: {rows.column_names})")
        rows = rows.select_columns([hub.column]).rename_column(hub.column, "text") if hub.column != "text" else rows.select_columns(["text"])
    else:
        readers = {TEXT_READERS[Path(name).suffix] for name in options.files}
        if len(readers) != 1:
            raise DataError(f"mlm.files: mix of formats {sorted(readers)}; use one kind of file")
        rows = datasets.load_dataset(readers.pop(), data_files={"text": options.files}, split="text")
        if "text" not in rows.column_names:
            raise DataError(f"mlm.files: no 'text' column in {options.files[0]}")
        rows = rows.select_columns(["text"])
    rows = rows.filter(_has_text, input_columns=["text"])
    if options.max_lines is not None and options.max_lines < len(rows):
        rows = rows.select(range(options.max_lines))
    if len(rows) == 0:
        raise DataError("mlm: the corpus has no non-empty lines")
    return rows


def _has_text(text: str | None) -> bool:
    return bool(text and text.strip())


def mlm_features(options: MlmOptions, tokenizer, max_seq_length: int):
    """Token ids (and the special-tokens mask the collator needs) of every line."""
    from xit_dist.data.hub_schema import derived_fingerprint
    from xit_dist.data.tokenizer_identity import tokenizer_identity

    rows = corpus_rows(options)

    def encode(batch):
        return dict(tokenizer(batch["text"], truncation=True, max_length=max_seq_length, return_special_tokens_mask=True))

    return rows.map(
        encode,
        batched=True,
        remove_columns=["text"],
        new_fingerprint=derived_fingerprint(rows, "mlm", MLM_VERSION, tokenizer_identity(tokenizer), max_seq_length),
    )


def mlm_collator(tokenizer, probability: float):
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=probability, pad_to_multiple_of=8)


def mlm_model_class():
    from transformers import AutoModelForMaskedLM

    return AutoModelForMaskedLM
