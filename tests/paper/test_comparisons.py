"""The comparison study (``zfcore.paper.comparisons``): the jobs of Tables 2-3, Fig. 6 and the
per-layer rates, records that round-trip and agree with the trainer's own evaluation, a study that
resumes instead of retraining, the records as the verdicts' arrays, the command line's listing,
and the hierarchical bootstrap against a naive loop."""

import json

import numpy as np
import pytest
import torch

from zfcore.models import TABLE3_VARIANTS
from zfcore.paper import comparisons as C
from zfcore.paper.verdicts import equivalence, from_interval, hierarchical_bootstrap
from zfcore.profiles import get_profile
from zfcore.train import make_spec, training_run


@pytest.fixture
def tiny(tmp_path):
    return get_profile("tiny").replace(
        n_train=96,
        n_val=40,
        n_test=40,
        epochs=2,
        cache_dir=tmp_path / "cache",
        figures_root=tmp_path / "fig",
    )


def test_the_study_lists_seed_0_of_every_network_first():
    jobs = C.study_jobs("tiny", freeze={"layer1": 1.0, "layer2": 1.0}, seeds=3)
    per_seed = len(TABLE3_VARIANTS) + 1 + 2 + len(C.SMALL_TRAIN_VARIANTS)
    assert len(jobs) == 3 * per_seed and [j.seed for j in jobs[:per_seed]] == [0] * per_seed
    names = [j.name for j in jobs]
    assert len(set(names)) == len(names)
    assert names[:2] == ["table3-zf-s0", "table3-no_layer7-s0"]
    assert {
        "krizhevsky-11x11_4-s2",
        "per_layer-freeze-s1",
        "per_layer-rates-s0",
        "small_train-zf-s0",
    } <= set(names)
    P = get_profile("tiny")
    assert C.Job("table3").training_kwargs(P) == {
        "arch": "zfnet",
        "variant": "zf",
        "epochs": P.epochs,
    }
    small = next(j for j in jobs if j.group == "small_train")
    assert small.spec(P).profile.n_train == max(P.batch_size, int(P.n_train * C.SMALL_TRAIN_SHARE))
    # the small training set trains as many steps as the main model, its schedule stretched
    for name in ("tiny", "mini"):
        Q = get_profile(name)
        q = C.Job("small_train", overrides=C._pairs(C.small_train_overrides(Q))).spec(Q).profile
        assert q.n_train * q.epochs == Q.n_train * Q.epochs and q.epochs == 4 * Q.epochs
        assert q.warmup_epochs == 4 * Q.warmup_epochs and q.dropout_after == 4 * Q.dropout_after
        assert q.lr_drop_epochs == tuple(4 * e for e in Q.lr_drop_epochs)
        assert C.job_cost(
            C.Job("small_train", overrides=C._pairs(C.small_train_overrides(Q))), Q
        ) == (pytest.approx(1.0))
    freeze = next(j for j in jobs if j.arm == "freeze")
    assert dict(freeze.spec(P).options.freeze_after) == {"layer1": 1.0, "layer2": 1.0}
    assert jobs[per_seed].spec(P).profile.seed == 1 and jobs[0].network == "table3-zf"
    # seed 0 of the Fig. 3 network is the main model: the same cache entry
    assert C.Job("table3").spec(P).entry() == make_spec(P).entry()
    for bad in (dict(groups=["nope"]), dict(variants=["zf", "bad"]), dict(seeds=0)):
        with pytest.raises(C.ComparisonError):
            C.study_jobs("tiny", freeze={"layer1": 1.0}, **bad)


def test_job_cost_counts_images_and_multiply_adds():
    P = get_profile("tiny")
    assert C.job_cost(C.Job("table3"), P) == pytest.approx(1.0)
    small = C.Job("small_train", overrides=(("n_train", P.n_train // 4),))
    assert C.job_cost(small, P) == pytest.approx(0.25)
    assert (
        C.job_cost(C.Job("table3", variant="conv3_4_5_wide"), P)
        > 1.0
        > C.job_cost(C.Job("table3", variant="no_layers3_4"), P)
    )


def test_every_jobs_overrides_survive_json(tiny):
    # a record stores its job's overrides as JSON lists: pairs (freeze_after) and epoch tuples
    # (the small training set's lr_drop_epochs, checkpoint_epochs) must come back as they were
    for job in C.study_jobs(tiny, seeds=1, freeze={"layer1": 1.0, "layer2": 1.0}):
        stored = json.loads(json.dumps({"overrides": job.overrides}))["overrides"]
        back = C.Job(
            job.group,
            job.arch,
            job.variant,
            job.seed,
            tuple((k, C._tuples(v)) for k, v in stored),
            job.arm,
        )
        assert back == job and back.key(tiny) == job.key(tiny), job.name


@pytest.mark.slow
def test_a_record_round_trips_and_matches_the_trainers_evaluation(tiny):
    job = C.Job("krizhevsky", arch="krizhevsky")
    rec = C.record_network(job, tiny)
    f = tiny.figures_dir / "study" / "krizhevsky-11x11_4-s0.json"
    assert f.is_file()
    again = C.NetworkRecord.from_json(json.loads(f.read_text()))
    assert (
        again.job == job
        and torch.equal(again.val_top5, rec.val_top5)
        and torch.equal(again.layer1_filters, rec.layer1_filters)
    )
    run = training_run(tiny, arch="krizhevsky", progress=False)
    assert rec.val_top1_error == pytest.approx(run.final.val_top1_error, abs=1e-6)
    assert rec.train_top1_error == pytest.approx(run.final.train_eval_top1_error, abs=1e-6)
    assert rec.val_top1_error_per_epoch == [h.val_top1_error for h in run.history]
    assert (
        rec.steps == (tiny.n_train // tiny.batch_size) * tiny.epochs
        and rec.layer1_filters.shape[-1] == 11
    )
    assert rec.layer1_activity.shape == (rec.layer1_filters.shape[0],) and rec.provenance[
        "device"
    ].startswith("cpu")
    assert C.load_record(job, tiny).key == job.key(tiny)
    # a record of another training configuration is not this job's
    assert C.load_record(job, tiny.replace(lr=tiny.lr * 2)) is None


@pytest.mark.slow
def test_the_study_resumes_from_its_records(tiny, monkeypatch):
    jobs = C.study_jobs(tiny, ["table3"], ["zf", "no_layers6_7"], seeds=1)
    out = C.run_study(tiny, jobs, workers=1, progress=False)
    assert out["trained"] == ["table3-zf-s0", "table3-no_layers6_7-s0"] and not C.missing_jobs(
        jobs, tiny
    )

    def forbidden(*a, **k):
        raise AssertionError("a recorded network was trained again")

    monkeypatch.setattr(C, "record_network", forbidden)
    assert C.run_study(tiny, jobs, workers=2, progress=False)["trained"] == []
    recs = C.network_records(tiny, jobs)
    assert sorted(recs) == ["table3-no_layers6_7-s0", "table3-zf-s0"]
    arrays = C.network_arrays({name: [rec] for name, rec in recs.items()})
    for name, rec in recs.items():
        assert arrays[name]["val"].shape == (1, tiny.n_val)
        assert np.array_equal(arrays[name]["val"][0], rec.val_top1.numpy().astype(float))
        assert np.array_equal(arrays[name]["train"][0], rec.train_top1.numpy().astype(float))


def test_the_command_line_lists_what_is_recorded(tiny, capsys, monkeypatch):
    jobs = C.study_jobs(tiny, ["table3"], ["zf"], seeds=1)
    monkeypatch.setattr(C, "get_profile", lambda profile: tiny)
    assert C.main(["--groups", "table3", "--seeds", "1", "--list", "--draft"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"0 of {len(C.study_jobs(tiny, ['table3'], seeds=1))} recorded"
    assert any(line.startswith("missing  table3-zf-s0") for line in out)
    assert jobs[0].name == "table3-zf-s0"


def test_the_command_line_trains_on_the_device_it_is_given(tiny, capsys, monkeypatch):
    seen = {}

    def fake_study(P, jobs, workers, threads):
        seen.update(device=P.device, jobs=[j.name for j in jobs], workers=workers)
        return {"trained": [], "recorded": [], "seconds": 0.0, "cost": 0.0}

    monkeypatch.setattr(C, "get_profile", lambda profile, **kw: tiny.replace(**kw))
    monkeypatch.setattr(C, "run_study", fake_study)
    args = ["--groups", "table3", "--networks", "table3-zf", "--seeds", "1", "--draft"]
    assert C.main([*args, "--device", "meta", "--workers", "3"]) == 0
    assert seen == {"device": "meta", "jobs": ["table3-zf-s0"], "workers": 3}
    assert C.main(args) == 0 and seen["device"] == tiny.device  # the profile's by default
    assert C.Job("table3").key(tiny) == C.Job("table3").key(tiny.replace(device="meta"))


def test_study_cost_sums_every_group_and_seed():
    P = get_profile("tiny")
    small = C._pairs(C.small_train_overrides(P))
    one_seed = (
        sum(C.job_cost(C.Job("table3", variant=v), P) for v in TABLE3_VARIANTS)
        + C.job_cost(C.Job("krizhevsky", arch="krizhevsky"), P)
        + 2.0  # the per-layer arms train the Fig. 3 network on every image
        + sum(
            C.job_cost(C.Job("small_train", variant=v, overrides=small), P)
            for v in C.SMALL_TRAIN_VARIANTS
        )
    )
    assert C.study_cost(P) == pytest.approx(P.comparison_seeds * one_seed)


def test_hierarchical_bootstrap_against_a_naive_loop():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 50)) < 0.8).astype(float)
    b = (rng.random((2, 50)) < 0.6).astype(float)
    stat = lambda m: 100 * (m["a"]["val"] - m["b"]["val"])  # noqa: E731
    v = hierarchical_bootstrap("x", {"a": {"val": a}, "b": {"val": b}}, stat, n_boot=300, seed=7)
    # the same draws, one resample at a time: items first (shared), then each network's seeds
    g = np.random.default_rng(7)
    items = g.integers(0, 50, size=(300, 50))
    sa, sb = g.integers(0, 3, size=(300, 3)), g.integers(0, 2, size=(300, 2))
    naive = [
        100
        * (
            np.mean([a[s][items[i]].mean() for s in sa[i]])
            - np.mean([b[s][items[i]].mean() for s in sb[i]])
        )
        for i in range(300)
    ]
    assert (v.low, v.high) == pytest.approx(tuple(np.quantile(naive, [0.025, 0.975])))
    assert v.effect == pytest.approx(100 * (a.mean() - b.mean()))
    assert "2/3 seeds per network resampled" in v.source and "shared by the networks" in v.source
    with pytest.raises(ValueError, match="same 'val' items"):
        hierarchical_bootstrap("x", {"a": {"val": a}, "b": {"val": b[:, :10]}}, stat)


def test_hierarchical_bootstrap_borrows_the_pooled_seed_spread_by_hand():
    rng = np.random.default_rng(1)
    a = (rng.random((3, 40)) < 0.7).astype(float)  # trained three times
    b = (rng.random((1, 40)) < 0.6).astype(float)  # trained once
    stat = lambda m: 100 * (m["a"]["val"] - m["b"]["val"])  # noqa: E731
    v = hierarchical_bootstrap("x", {"a": {"val": a}, "b": {"val": b}}, stat, n_boot=200, seed=3)
    # by hand: a's seed deviations from its mean, each times sqrt(3 / 2), are b's seed spread
    dev = [(a[k].mean() - a.mean()) * np.sqrt(3 / 2) for k in range(3)]
    g = np.random.default_rng(3)
    items = g.integers(0, 40, size=(200, 40))
    sa = g.integers(0, 3, size=(200, 3))
    g.integers(0, 1, size=(200, 1))  # b's own (single) seed
    pick = g.integers(0, 3, size=200)
    naive = [
        100
        * (np.mean([a[s][items[i]].mean() for s in sa[i]]) - (b[0][items[i]].mean() + dev[pick[i]]))
        for i in range(200)
    ]
    assert (v.low, v.high) == pytest.approx(tuple(np.quantile(naive, [0.025, 0.975])))
    assert v.effect == pytest.approx(100 * (a.mean() - b.mean()))
    assert "borrows the seed spread pooled from the 3 seeds" in v.source


def test_borrowed_seed_spread_widens_the_interval_only_when_seeds_differ():
    # positive control: seeds that shift accuracy by +-10 points must widen a one-seed
    # network's interval; identical seeds must leave it as it was
    rng = np.random.default_rng(2)
    base = (rng.random(400) < 0.7).astype(float)
    shifted = np.stack([base, np.roll(base, 1), base]).copy()
    shifted[0, :40], shifted[2, :40] = 1.0, 0.0  # seed 0 +10 points, seed 2 -10 points
    same = np.stack([base, base, base])
    one = {"val": (rng.random((1, 400)) < 0.6).astype(float)}
    stat = lambda m: 100 * (m["a"]["val"] - m["b"]["val"])  # noqa: E731

    def width(a, **kw):
        v = hierarchical_bootstrap("x", {"a": {"val": a}, "b": one}, stat, seed=0, **kw)
        return v.high - v.low, v.source

    wide, source = width(shifted)
    narrow, plain = width(shifted, borrow_seed_spread=False)
    assert wide > narrow + 4 and "borrows" in source and "adds no seed variance" in plain
    assert width(same)[0] == pytest.approx(width(same, borrow_seed_spread=False)[0], rel=0.15)
    # a pool of its own: spread_from names the donors
    _, src = width(same, spread_from={"c": {"val": shifted}})
    assert "pooled from the 3 seeds" in src


def test_equivalence_within_a_margin_by_hand():
    inside = equivalence("same", from_interval("d", 0.2, -0.5, 0.8, unit="points"), 1.0)
    assert (inside.effect, inside.low, inside.high, inside.verdict) == pytest.approx(
        (0.8, 0.2, 1.0, "held")
    )
    outside = equivalence("same", from_interval("d", -3.0, -4.0, -2.0), 1.0)
    assert (outside.low, outside.high, outside.verdict) == (-3.0, -1.0, "did not hold")
    straddles = equivalence("same", from_interval("d", 0.9, 0.3, 1.5), 1.0)
    assert straddles.verdict == "within noise" and "margin 1" in straddles.source
    with pytest.raises(ValueError, match="positive"):
        equivalence("same", inside, 0.0)
