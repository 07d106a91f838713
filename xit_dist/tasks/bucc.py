"""BUCC 2018 bitext mining (XTREME): find the translation pairs hidden among comparable
sentences, de/fr/ru/zh against English. Read from the ORIGINAL release files, because the
hub's ``bucc18`` configs hold only the gold pairs, without the distractor sentences that make
mining a task.

Layout (the release tarballs unpacked; point ``data.task_files.bucc`` or ``--data-files`` at the
folder holding ``bucc2018/`` or at ``bucc2018/`` itself)::

    bucc2018/<lang>-en/<lang>-en.{sample,training}.{<lang>,en,gold}

``.<lang>`` / ``.en``: ``id<TAB>sentence``; ``.gold``: ``<lang>-id<TAB>en-id``. As XTREME does
(``download_data.sh`` renames them), the ``sample`` files are the dev set and the ``training``
files the test set (the official test gold is not public). The ``test`` split therefore also
carries the dev sentences (``part`` "dev"): the F1 threshold is chosen on the dev gold and
applied to the test candidates in the same evaluation pass. ``validation`` scores the dev set
at its own best threshold. Sentences keep their raw text, the line ``cut -f2`` hands XTREME's
``text_load_unify``: the format unifies sentences on it and drops a stripped text found on
several lines, as the official mining and ``read_sent2id`` do.

No training data: evaluated straight from an encoder (``retrieval`` format, ratio-margin mining).
"""

from xit_dist.errors import DataError
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.languages import task_languages
from xit_dist.tasks.retrieval_rows import (
    RELEASE_SCHEMA,
    SOURCE,
    TARGET,
    RetrievalColumns,
    prefix_friendly_order,
    read_tsv,
    release_dir,
    round_robin,
    row,
    rows_dataset,
)

# (part, release file name): XTREME's dev = the release's "sample", test = its "training".
BUCC_PARTS = {"validation": (("dev", "sample"),), "test": (("dev", "sample"), ("test", "training"))}


def read_bucc(directory, source: DataSource):
    lang = source.language
    folder = release_dir(directory, source, (f"bucc2018/{lang}-en", f"{lang}-en"), marker=f"{lang}-en.sample.{lang}")
    orders = []
    for part, release_name in BUCC_PARTS[source.split]:
        stem = f"{lang}-en.{release_name}"
        foreign, english = read_tsv(folder / f"{stem}.{lang}"), read_tsv(folder / f"{stem}.en")
        gold_path = folder / f"{stem}.gold"
        gold: dict[str, list[str]] = {}
        known_foreign, known_english = {i for i, _ in foreign}, {i for i, _ in english}
        for number, (foreign_id, english_id) in enumerate(read_tsv(gold_path), start=1):
            if foreign_id not in known_foreign or english_id not in known_english:
                raise DataError(f"{gold_path}:{number}: gold pair {foreign_id} {english_id} names a sentence the .{lang}/.en files lack")
            gold.setdefault(foreign_id, []).append(english_id)
        # the raw sentence field: mining unifies sentences on it (the format strips before embedding)
        sources = [row(i, text, SOURCE, part, gold.get(i)) for i, text in foreign]
        targets = [row(i, text, TARGET, part) for i, text in english]
        orders.append(prefix_friendly_order(sources, targets))
    return rows_dataset(round_robin(*orders))


def _eval_source(split: str, lang: str) -> DataSource:
    return DataSource("bucc2018", f"{lang}-en", split, RetrievalColumns(), RELEASE_SCHEMA, language=lang, reader=read_bucc)


BUCC = Task(
    name="bucc",
    format="retrieval",
    description="BUCC 2018 bitext mining (original release files: the hub copy has no distractors); "
    "no training, ratio-margin mining, F1 at the threshold chosen on the dev (sample) gold.",
    label_names=(),
    languages=task_languages("bucc"),
    train=None,
    dev=None,
    eval_source=_eval_source,
    metric="f1",
    benchmarks=("xtreme",),
)
