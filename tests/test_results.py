"""Result keys, the transfer gap, the table and artifacts; evaluation sharding helpers."""

from __future__ import annotations

import csv
import json

import pytest

from xit_dist.evaluate.results import TaskResults
from xit_dist.evaluate.zero_shot import length_sorted_batches, shard_indices


def sample() -> TaskResults:
    return TaskResults(
        "xnli", "test", {"en": {"accuracy": 80.0}, "de": {"accuracy": 70.0}, "zh": {"accuracy": 60.0}}, {"en": 10, "de": 10, "zh": 10}
    )


def test_mlflow_keys_average_and_gap():
    assert sample().mlflow_metrics() == {
        "xnli.accuracy.en": 80.0,
        "xnli.accuracy.de": 70.0,
        "xnli.accuracy.zh": 60.0,
        "xnli.accuracy.avg": 70.0,
        "xnli.transfer_gap": 15.0,  # 80 - (70 + 60) / 2
    }


def test_no_gap_without_english():
    results = TaskResults("xnli", "test", {"de": {"accuracy": 70.0}, "zh": {"accuracy": 60.0}}, {"de": 1, "zh": 1})
    assert "xnli.transfer_gap" not in results.mlflow_metrics()
    assert "transfer gap" not in results.table()


def test_table_lists_every_language_and_the_gap():
    table = sample().table()
    for row in ("en", "de", "zh"):
        assert any(line.split()[:1] == [row] for line in table.splitlines())
    assert "avg" in table and "70.00" in table
    assert "transfer gap (en minus mean of others, accuracy): 15.00" in table


def test_artifacts(tmp_path):
    paths = sample().write(tmp_path)
    assert [p.name for p in paths] == ["xnli_results.json", "xnli_results.csv", "xnli_accuracy_by_language.png"]
    assert json.loads(paths[0].read_text())["summary"]["xnli.transfer_gap"] == 15.0
    rows = list(csv.reader(paths[1].open()))
    assert rows[0] == ["language", "examples", "accuracy"] and rows[1] == ["en", "10", "80.0000"]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths[2].stat().st_size > 5000


@pytest.mark.parametrize("rows, world", [(0, 2), (1, 2), (7, 2), (65, 2), (10, 3)])
def test_shards_cover_every_row_once(rows, world):
    shards = [shard_indices(rows, rank, world) for rank in range(world)]
    assert sorted(i for shard in shards for i in shard) == list(range(rows))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_length_sorted_batches_group_similar_lengths():
    lengths = [5, 1, 9, 3, 7, 2]
    batches = length_sorted_batches(lengths, [0, 1, 2, 3, 4, 5], 2)
    assert batches == [[1, 5], [3, 0], [4, 2]]


def test_length_sorted_batches_end_before_padding_exceeds_the_cap():
    lengths = [20, 20, 20, 21, 30, 30, 31, 31]
    batches = length_sorted_batches(lengths, list(range(8)), batch_size=8, max_padding=0.05)
    # 20,20,20 + 21 pads 3 of 84 tokens (3.6%): kept; a 30 would pad 39 of 150 (26%): a new batch, though 8 rows fit
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7]]
    for batch in length_sorted_batches([5, 6, 7, 8, 9, 10, 40], list(range(7)), batch_size=64, max_padding=0.05):
        padded = len(batch) * max([5, 6, 7, 8, 9, 10, 40][i] for i in batch)
        assert padded - sum([5, 6, 7, 8, 9, 10, 40][i] for i in batch) <= 0.05 * padded
