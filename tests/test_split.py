"""Row-stripe splitting (planner/models/split.py): split models run in an unchanged TFLite
Micro with outputs identical to the original's, their plans hold in TFLM, the search is
never worse than not splitting, and `--split none` is today's planner."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tflite_models import schema, stripe_model

from planner.macs import macs, total_macs
from planner.tflm_runtime import available

pytestmark = pytest.mark.skipif(not available(), reason="needs the tflite-micro wheel")


def _outputs_equal(a, b) -> bool:
    return all(
        np.array_equal(x, y) for u, v in zip(a.outputs, b.outputs, strict=True) for x, y in zip(u, v, strict=True)
    )


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    schema()
    return stripe_model(tmp_path_factory.mktemp("split") / "toy.tflite", size=20)


def test_every_region_and_stripe_count_gives_identical_outputs_in_tflm(toy, tmp_path):
    from planner.models.split import StripeSplit, region_problem, regions, split_model
    from planner.models.tflite import read_model
    from planner.tflm_check import random_invocations
    from planner.tflm_runtime import tflm_run_full

    model, data = read_model(toy)
    found = regions(model)
    assert {(r.ops[0], r.ops[-1]) for r in found} >= {(0, 5), (0, 3), (3, 4)}  # chains, residual, pools
    invs = random_invocations(toy, 2, seed=1)
    ref = tflm_run_full(toy, invs)
    checked = 0
    for r in found:
        for k in (2, 3, 7):
            if region_problem(model, r, k):
                continue
            # halo rows recomputed / copied; SAME on the stripe / exact rows behind a PAD;
            # stripe boundaries even or on 16-byte multiples of the output
            modes = (
                [(c, s, a) for c in (False, True) for s in (True, False) for a in (1, 16)]
                if k == 3
                else [(False, True, 1)]
            )
            for cache, same, align in modes:
                out = tmp_path / f"{r.ops[0]}_{r.ops[-1]}_{k}_{cache}_{same}_{align}.tflite"
                out.write_bytes(split_model(data, [StripeSplit(r, k, cache, same, align)]))
                assert _outputs_equal(ref, tflm_run_full(out, invs)), (r, k, cache, same, align)
                checked += 1
    assert checked >= 60


def test_average_pool_without_padding_splits_and_with_padding_is_refused(tmp_path):
    from planner.models.split import Region, region_problem, regions
    from planner.models.tflite import read_model

    model, _ = read_model(stripe_model(tmp_path / "avg.tflite", size=23, avg_pool="VALID"))
    assert any(4 in r.ops for r in regions(model))  # VALID average pooling: exact per stripe
    # more stripes than rows, more than TFLM's CONCATENATION takes, a run with a gap: one line each
    assert "rows" in region_problem(model, Region((0, 1, 2, 3, 4, 5), 0, 14), 7)
    assert "at most 100" in region_problem(model, Region((0, 1, 2, 3, 4, 5), 0, 14), 101)
    assert "consecutive" in region_problem(model, Region((0, 2), 0, 7), 2)
    model, _ = read_model(stripe_model(tmp_path / "avg_same.tflite", size=20, avg_pool="SAME"))
    assert not any(4 in r.ops for r in regions(model))  # its average counts only real inputs
    assert "AVERAGE_POOL_2D" in region_problem(model, Region((3, 4), 7, 11), 2)


def test_splits_that_overlap_or_do_not_fit_are_refused_with_one_line(toy):
    from planner.models.split import Region, SplitError, StripeSplit, regions, split_model
    from planner.models.tflite import read_model

    model, data = read_model(toy)
    r = next(r for r in regions(model) if r.ops == (0, 1, 2, 3))
    with pytest.raises(SplitError, match="overlap"):
        split_model(data, [StripeSplit(r, 2), StripeSplit(Region((3, 4), r.output, 11), 2)])
    with pytest.raises(SplitError, match="into 11 stripes: the output has 10 rows"):
        split_model(data, [StripeSplit(r, 11)])


def test_macs_count_convolutions_depthwise_and_halo_recomputation(toy):
    from planner.models.split import Estimator, StripeSplit, load_split, model_regions
    from planner.models.tflite import load_tflite

    g = load_tflite(toy)
    m = macs(g)
    assert m["0:CONV_2D"] == 20 * 20 * 8 * 3 * 3 * 3
    assert m["1:DEPTHWISE_CONV_2D"] == 20 * 20 * 8 * 3 * 3
    assert m["2:ADD"] == 0 and m["4:MAX_POOL_2D"] == 0
    r = next(r for r in model_regions(g) if r.ops == (0, 1, 2))
    split = load_split(g, [StripeSplit(r, 2)])
    # two stripes of 10 rows; the depthwise needs one halo row of conv0 across the cut, and
    # both run SAME on their stripe (no PAD copy), computing one more row at the stripe's
    # far edge that nothing reads: conv0 11 + 1 rows, the depthwise 10 + 1, per stripe
    conv_row, dw_row = 20 * 8 * 3 * 3 * 3, 20 * 8 * 3 * 3
    assert total_macs(split) - total_macs(g) == 2 * (2 * conv_row + dw_row)
    est = Estimator(g).estimate([StripeSplit(r, 2)])
    assert est.extra_macs == total_macs(split) - total_macs(g)
    # every row computed once: halo rows copied and each op on exactly its rows behind a PAD
    exact = StripeSplit(r, 4, cache=True, same=False)
    assert total_macs(load_split(g, [exact])) == total_macs(g) and Estimator(g).estimate([exact]).extra_macs == 0
    rec = split.source.transforms[-1]
    assert rec.macs_before == total_macs(g) and rec.mac_overhead > 0
    assert split.source.sha256 == g.source.sha256 and split.name == g.name


def test_a_split_plan_runs_in_tflm_with_identical_outputs_and_its_arena(toy):
    from planner.models.split import StripeSplit, load_split, model_regions, recorded_splits
    from planner.models.tflite import load_tflite
    from planner.plan import read_plan
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver
    from planner.target import get_target
    from planner.tflm_check import check_in_tflm

    g = load_tflite(toy)
    r = next(r for r in model_regions(g) if r.ops == (0, 1, 2, 3))
    chosen = StripeSplit(r, 4, cache=True, same=False, align=16)  # every field differs from its default
    split = load_split(g, [chosen])
    target = replace(get_target("unbounded"), share="all", lifetimes="tflm")
    plan = get_solver("auto")(split, target, SolveOptions(time_limit=5))
    unsplit = get_solver("auto")(g, target, SolveOptions(time_limit=5))
    assert plan.metrics.arena_bytes < unsplit.metrics.arena_bytes
    check = check_in_tflm(plan, toy, invocations=3)  # the reference is the ORIGINAL model
    assert check.ok, check
    plan.write(toy.with_suffix(".plan.json"))
    again = read_plan(toy.with_suffix(".plan.json"))  # the plan file says how to split again
    assert recorded_splits(again.graph) == (chosen,)
    assert check_in_tflm(again, toy, invocations=2).ok


def test_plan_split_is_never_worse_and_none_is_the_plain_solve(toy):
    from planner.models.tflite import load_tflite
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver
    from planner.splitting import plan_split
    from planner.target import get_target

    g = load_tflite(toy)
    target = replace(get_target("unbounded"), share="all", lifetimes="tflm")
    solve = get_solver("auto")
    plain = solve(g, target, SolveOptions(time_limit=5, objective="peak"))
    none = plan_split(solve, g, target, SolveOptions(time_limit=5, objective="peak"), "none")
    assert none.metrics.arena_bytes == plain.metrics.arena_bytes and not none.transforms
    best = plan_split(solve, g, target, SolveOptions(time_limit=20, objective="peak"), "auto", max_overhead=1.0)
    assert best.metrics.arena_bytes <= plain.metrics.arena_bytes
    if best.transforms:
        facts = best.solver.facts["split"]
        assert facts["mac_overhead"] <= 1.0 and facts["floor_after"] < facts["floor_before"]
    # within 0 % extra MACs only splits that recompute nothing are allowed: none helps here
    tight = plan_split(solve, g, target, SolveOptions(time_limit=10, objective="peak"), "auto", max_overhead=0.0)
    assert tight.metrics.arena_bytes <= plain.metrics.arena_bytes
    # the default objective with no budget needs nothing: no split is even tried
    assert not plan_split(solve, g, target, SolveOptions(time_limit=5)).transforms


def test_cli_plans_runs_and_shows_a_split_plan(toy, tmp_path, capsys):
    from planner.cli import main

    out = tmp_path / "toy.plan.json"
    args = [str(toy), "--objective", "peak", "--max-overhead", "100", "--time-limit", "20", "--quiet"]
    assert main(["plan", *args, "-o", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    split = next(t for t in d["transforms"] if t["kind"] == "split")
    assert split["splits"] and d["macs"] >= split["macs"]["before"]
    facts = d["solver"]["facts"]["split"]
    assert facts["search"] == "cover+greedy" and facts["proven_best_of"] in (None, *range(1, 1000))
    assert main(["run", str(out)]) == 0
    assert "identical" in capsys.readouterr().out
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "row stripes" in shown and "halo rows" in shown
    assert ("optimal over the" in shown) == bool(facts["proven_best_of"]) and "search" in shown
    assert main(["plan", str(toy), "--objective", "peak", "--split", "none", "-o", str(out), "--json"]) == 0
    assert "transforms" not in json.loads(out.read_text())
    capsys.readouterr()
    assert main(["plan", str(toy), "--max-overhead", "-3", "-o", str(out)]) == 2
    assert "max-overhead" in capsys.readouterr().err


def test_a_budget_the_model_misses_is_met_by_splitting_and_runs_in_tflm(tmp_path, capsys):
    from planner.cli import main

    out = tmp_path / "r8.plan.json"
    base = ["plan", "mlperf_resnet8", "--target", "nrf52840", "--budget", "40KiB", "--time-limit", "30", "--quiet"]
    assert main([*base, "--split", "none", "-o", str(out)]) == 1  # as imported: 48 KiB at least
    assert "does not fit" in capsys.readouterr().err
    assert main([*base, "-o", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["arena_bytes"] <= 40 * 1024 and any(t["kind"] == "split" for t in d["transforms"])
    assert d["macs"] <= 1.10 * next(t for t in d["transforms"] if t["kind"] == "split")["macs"]["before"]
    assert main(["run", str(out), "--invocations", "3"]) == 0
    assert "identical" in capsys.readouterr().out


def test_fully_connected_layers_split_in_channel_chunks_when_weights_are_loaded(tmp_path, capsys):
    from planner.cli import main
    from planner.models.split import Region, _Model, channel_problem, model_regions
    from planner.models.tflite import read_model
    from planner.models.zoo import load_model

    g = load_model("mlperf_ad_fc_autoencoder")
    chans = [r for r in model_regions(g) if r.kind == "channels"]
    assert len(chans) == 10  # every FULLY_CONNECTED
    model, _ = read_model(g.source.path)
    assert "one FULLY_CONNECTED" in channel_problem(_Model(model), Region((0, 1), 0, 1, "channels"), 2)
    out = tmp_path / "ae.plan.json"
    base = ["plan", "mlperf_ad_fc_autoencoder", "--target", "nrf52840", "--weights", "load", "--quiet"]
    assert main([*base, "--objective", "peak", "--time-limit", "20", "-o", str(out), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    split = next(t for t in d["transforms"] if t["kind"] == "split")
    assert {s["split"] for s in split["splits"]} == {"channels"} and d["macs"] == split["macs"]["before"]
    assert d["arena_bytes"] < d["solver"]["facts"]["unsplit_arena"]
    assert main(["run", str(out), "--invocations", "3"]) == 0
    assert "identical" in capsys.readouterr().out


def test_a_model_with_ops_without_outputs_plans_with_split_auto():
    """The wakeword models' ASSIGN_VARIABLE ops have no outputs: screening must not trip on them."""
    from planner.models.zoo import is_available, load_model
    from planner.solvers.base import SolveOptions
    from planner.solvers.registry import get_solver
    from planner.splitting import plan_split
    from planner.target import get_target

    if not is_available("okay_nabu"):
        pytest.skip("needs the pymicro-wakeword wheel (tests/model-wheels.txt)")
    g = load_model("okay_nabu")
    target = replace(get_target("unbounded"), llb_bytes=0, share="all", lifetimes="tflm")
    plan = plan_split(get_solver("auto"), g, target, SolveOptions(time_limit=4, objective="peak"))
    assert plan.metrics.arena_bytes > 0


@pytest.mark.parametrize("half_pixel", [False, True])
def test_regions_through_a_nearest_neighbour_resize_give_identical_outputs_in_tflm(tmp_path, half_pixel):
    from tflite_models import resize_model

    from planner.models.split import Region, StripeSplit, region_problem, regions, split_model
    from planner.models.tflite import read_model
    from planner.tflm_check import random_invocations
    from planner.tflm_runtime import tflm_run_full

    path = resize_model(tmp_path / "resize.tflite", half_pixel=half_pixel)
    model, data = read_model(path)
    found = regions(model)
    assert {(r.ops[0], r.ops[-1]) for r in found} >= {(0, 2), (0, 3), (1, 3)}
    assert "end at a resize" in region_problem(model, Region((0, 1), 0, 5), 2)
    invs = random_invocations(path, 2, seed=1)
    ref = tflm_run_full(path, invs)
    checked = 0
    for r in found:
        if 1 not in r.ops:
            continue
        for k, cache, same in ((2, False, True), (3, True, True), (5, False, False), (7, True, False)):
            if region_problem(model, r, k):
                continue
            out = tmp_path / f"{r.ops[0]}_{r.ops[-1]}_{k}_{cache}_{same}.tflite"
            out.write_bytes(split_model(data, [StripeSplit(r, k, cache, same, align=16)]))
            assert _outputs_equal(ref, tflm_run_full(out, invs)), (r, k, cache, same)
            checked += 1
    assert checked >= 8
