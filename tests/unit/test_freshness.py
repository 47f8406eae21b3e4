"""The stages' one freshness check (stages/common.py): finished records are kept only when made from what is
asked now; a missing or damaged file holds none; a sample shard is current only as a whole."""

import json

from crystalflow_core.stages.common import records_current, records_made_as


def _write(path, recs, tail=""):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs) + tail)


def test_records_current_keeps_only_records_made_from_what_is_asked(tmp_path):
    out = tmp_path / "relaxed.jsonl"
    assert records_current(out, {"a": "k1"}, "provenance") == {}  # missing file: nothing finished
    _write(out, [{"id": "a", "provenance": "k1"}, {"id": "b", "provenance": "old"}, {"id": "c", "provenance": "k1"}])
    got = records_current(out, {"a": "k1", "b": "k1"}, "provenance")
    assert list(got) == ["a"]  # b: other settings; c: not asked for
    keep = records_current(out, {"a": "k1", "c": "k1"}, "provenance", keep_if=lambda r: r["id"] != "a")
    assert list(keep) == ["c"]


def test_a_truncated_last_line_loses_only_that_record_and_a_damaged_file_holds_none(tmp_path):
    out = tmp_path / "relaxed.jsonl"
    _write(out, [{"id": "a", "provenance": "k"}], tail='{"id": "b", "prov')  # a kill mid-write
    assert list(records_current(out, {"a": "k", "b": "k"}, "provenance")) == ["a"]
    out.write_text('not json\n{"id": "a", "provenance": "k"}\n')
    assert records_current(out, {"a": "k"}, "provenance") == {}
    assert not records_made_as(out, "k")


def test_a_shard_is_current_only_when_every_record_has_the_key(tmp_path):
    shard = tmp_path / "shard0.jsonl"
    assert not records_made_as(shard, "k")
    _write(shard, [])
    assert not records_made_as(shard, "k")  # empty: not made
    _write(shard, [{"id": "0", "provenance": "k"}, {"id": "1", "provenance": "k"}])
    assert records_made_as(shard, "k")
    _write(shard, [{"id": "0", "provenance": "k"}, {"id": "1", "provenance": "other"}])
    assert not records_made_as(shard, "k")
    _write(shard, [{"id": "0", "provenance": "k"}], tail='{"id": "1", "prov')  # cut mid-write: rebuilt whole
    assert not records_made_as(shard, "k")
