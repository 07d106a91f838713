"""ClassLabel columns of local files: ids re-mapped by class name when a file carries its own
names in another order than the hub's, and ids out of range refused with the row that holds
them (counted from 1). `datasets`' own cast does neither: it keeps ids as they are, and checks
no range when the ids are int64."""

from __future__ import annotations

from xit_dist.data.hub_schema import derived_fingerprint, hub_features
from xit_dist.data.row_check import NO_LABEL, class_id_problem
from xit_dist.errors import DataError


def refuse_class_ids_out_of_range(rows, schema: dict[str, object], origin: str) -> None:
    """The first row whose class id is neither -1 nor below the number of classes."""
    import pyarrow.compute as pc

    for name, kind in schema.items():
        names = class_names(kind)
        if names is None:
            continue
        column = rows.data.table.column(name).combine_chunks()
        nested = isinstance(kind, list)
        values = pc.list_flatten(column) if nested else column
        bad = pc.fill_null(pc.or_(pc.less(values, NO_LABEL), pc.greater_equal(values, len(names))), False)
        if not pc.any(bad).as_py():
            continue
        position = pc.index(bad, True).as_py()
        row = pc.list_parent_indices(column)[position].as_py() if nested else position
        raise DataError(f"{origin}: row {row + 1}: {class_id_problem(values[position].as_py(), names, name)}")


def align_class_labels(rows, schema: dict[str, object], origin: str):
    """A file that carries its own ClassLabel names (a Parquet file written by `datasets`) in
    another order than the hub's would be relabelled by ``cast``, which keeps the ids: re-map
    its ids by name instead; a name the hub does not have is one line naming file and column.
    (`Dataset.align_labels_with_mapping` would do this, but in datasets 5.2 it fails on the -1
    of unlabelled rows and on lists of labels, UD-POS's tags.)"""
    for name, kind in schema.items():
        hub_names = class_names(kind)
        local = rows.features.get(name)
        local_names = class_names(local)
        if hub_names is None or local_names is None or list(local_names) == list(hub_names):
            continue
        unknown = [label for label in local_names if label not in hub_names]
        if unknown:
            raise DataError(f"{origin}: column {name!r}: class names {unknown} are not among the hub's {list(hub_names)}")
        new_ids = [list(hub_names).index(label) for label in local_names]
        features = rows.features.copy()
        features[name] = hub_features({name: kind})[name]
        rows = rows.map(
            _RemapIds(name, new_ids, nested=not _is_classlabel(local)),
            batched=True,
            features=features,
            new_fingerprint=derived_fingerprint(rows, "align-labels", name, local_names, hub_names),
        )
    return rows


def _is_classlabel(feature) -> bool:
    from datasets import ClassLabel

    return isinstance(feature, ClassLabel)


def class_names(kind):
    """The class names of a ClassLabel (or a list of ClassLabels), as a schema entry or a
    `datasets` feature; None for anything else."""
    if isinstance(kind, tuple) and kind[0] == "classlabel":
        return tuple(kind[1])
    if isinstance(kind, list) and len(kind) == 1:
        return class_names(kind[0])
    if _is_classlabel(kind):
        return tuple(kind.names)
    inner = getattr(kind, "feature", None)
    return tuple(inner.names) if _is_classlabel(inner) else None


class _RemapIds:
    """Picklable batch function: old class id -> new id; -1 (no label) stays -1."""

    def __init__(self, column: str, new_ids: list[int], nested: bool):
        self.column, self.new_ids, self.nested = column, new_ids, nested

    def _one(self, value):
        return value if value is None or value < 0 else self.new_ids[value]

    def __call__(self, batch):
        cells = batch[self.column]
        batch[self.column] = [[self._one(v) for v in cell] for cell in cells] if self.nested else [self._one(v) for v in cells]
        return batch
