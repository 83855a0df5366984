import pytest

from thce.evaluation import metrics, significance


def stats(pairs):
    return [
        metrics.per_example([g], [p] if p else [], chapter_of=lambda c: None, describe=lambda c: None)
        for g, p in pairs
    ]


def test_bootstrap_interval_contains_the_metric_and_is_degenerate_for_constant_data():
    right = stats([("E11.9", "E11.9")] * 20 + [("I10", "E11.9")] * 20)
    cis = significance.bootstrap_cis(significance.stat_arrays(right), resamples=500, seed=1)
    low, high = cis["exact_match"]
    assert low < 0.5 < high and low > 0.2 and high < 0.8
    assert cis["f1_macro"][0] <= cis["f1_macro"][1]
    perfect = stats([("E11.9", "E11.9")] * 10)
    assert significance.bootstrap_cis(significance.stat_arrays(perfect), resamples=100)["exact_match"] == [
        1.0,
        1.0,
    ]


def test_paired_difference():
    a = significance.stat_arrays(stats([("E11.9", "E11.9")] * 30))
    b = significance.stat_arrays(stats([("E11.9", "I10")] * 30))
    diff = significance.paired_bootstrap_difference(a, b, resamples=200)["exact_match"]
    assert diff["difference"] == 1.0 and diff["ci"] == [1.0, 1.0] and diff["p_not_better"] == 0.0


def test_mcnemar_exact_and_chi_squared():
    # 6 discordant pairs, all favouring A: two-sided exact p = 2 / 2**6
    result = significance.mcnemar([1] * 6 + [0] * 4, [0] * 6 + [0] * 4)
    assert result["method"] == "exact binomial" and result["p_value"] == pytest.approx(2 / 64)
    # 40 vs 10 discordant: chi2 = (|40-10|-1)^2/50 = 16.82, p ~ 4.1e-5
    a = [1] * 40 + [0] * 10 + [1] * 5
    b = [0] * 40 + [1] * 10 + [1] * 5
    result = significance.mcnemar(a, b)
    assert result["statistic"] == pytest.approx(16.82) and result["p_value"] == pytest.approx(
        4.11e-5, rel=0.01
    )
    assert significance.mcnemar([1, 0], [1, 0])["p_value"] == 1.0
