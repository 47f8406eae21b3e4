"""A DNG run's baselines in the workflow's DAG: each a point of its own, scored as the model's samples."""

from conftest import jobs_of, smk, tiny_config


def test_the_workflow_scores_each_baseline_as_the_model_but_sends_none_to_dft_or_transport(tmp_path):
    cfg = tiny_config(
        tmp_path,
        **{
            "runs.mp20_dng.conditions": [],
            "runs.mp20_dng.sample.condition_values": [],
            "runs.mp20_dng.baselines": ["random", "prototype"],
        },
    )
    plain = jobs_of(smk(["-n", "--configfile", str(tiny_config(tmp_path)), "--cores", "1"], tmp_path).stdout)
    both = jobs_of(smk(["-n", "--configfile", str(cfg), "--cores", "1"], tmp_path).stdout)
    for rule, more in (("sample", 2), ("gather_samples", 2), ("relax", 4), ("stability", 2), ("metrics", 2)):
        assert both[rule] == plain[rule] + more, rule  # dng: 1 sample shard and 2 relax shards per point
    for rule in ("train", "dft", "dft_results", "transport_screen", "transport"):
        assert both.get(rule) == plain.get(rule), rule
