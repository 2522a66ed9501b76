"""Eval drift (I): detector clean/shifted pairs, sequential false alarms, refusal, unbiased reweighting, refresh."""
from __future__ import annotations

import numpy as np
import pytest

from monitor.bounds import clopper_pearson
from monitor.eval_drift import (
    ClassifierDrift,
    SequentialDrift,
    grown_clusters,
    importance_weighted_estimate,
    pick_for_labelling,
    refreshed_estimate,
    weighted_estimate,
)


def _blobs(rng, n, centre, d=8, scale=1.0):
    return rng.normal(centre, scale, size=(n, d))


def _kind(rng, n, new=False):
    """Query-like embeddings: the old kind lives on dims 0-3, the new kind on dims 4-7 (cosine-far apart)."""
    s = np.r_[np.full(4, 0.05), np.ones(4)] if new else np.r_[np.ones(4), np.full(4, 0.05)]
    return rng.normal(size=(n, 8)) * s


def test_classifier_drift_silent_on_same_distribution_split():
    rng = np.random.default_rng(1)
    pool = _blobs(rng, 3000, 0.0)
    fired = 0
    for s in range(20):
        idx = np.random.default_rng(s).permutation(len(pool))
        fired += ClassifierDrift(pool[idx[:300]], p_val=0.05, seed=s).predict(pool[idx[300:500]]).is_drift
    assert fired <= 3  # level 0.05 over 20 splits: P(> 3 false alarms) < 2%


def test_classifier_drift_fires_on_shifted_window():
    rng = np.random.default_rng(2)
    ref = _blobs(rng, 300, 0.0)
    shifted = np.vstack([_blobs(rng, 160, 0.0), _blobs(rng, 40, 3.0)])  # 20% new kind
    r = ClassifierDrift(ref).predict(shifted)
    assert r.is_drift and r.statistic > 0.55 and r.p_val < 0.01 and r.meta["detector"] == "classifier"


def test_permutation_variant_agrees():
    rng = np.random.default_rng(3)
    ref = _blobs(rng, 80, 0.0, d=4)
    det = ClassifierDrift(ref, test="permutation", n_permutations=30, n_folds=3)
    assert not det.predict(_blobs(rng, 60, 0.0, d=4)).is_drift
    assert det.predict(_blobs(rng, 60, 1.5, d=4)).is_drift


def test_sequential_false_alarm_rate_within_alpha_and_alarm_after_shift():
    rng = np.random.default_rng(4)
    pool = _blobs(rng, 4000, 0.0)
    false = 0
    runs = 30
    for s in range(runs):
        r = np.random.default_rng(100 + s)
        seq = SequentialDrift(pool[r.choice(len(pool), 200, replace=False)], horizon=6, alpha=0.05, seed=s)
        for _ in range(6):
            res = seq.update(pool[r.choice(len(pool), 150, replace=False)])
        false += res.is_alarm
    assert clopper_pearson(false, runs).estimate <= 0.10
    seq = SequentialDrift(pool[:200], horizon=6, alpha=0.05)
    for week in range(6):
        new = 0 if week < 3 else 40
        res = seq.update(np.vstack([pool[200 + week * 150: 350 + week * 150 - new], _blobs(rng, new, 3.0)])
                         if new else pool[200 + week * 150: 350 + week * 150])
    assert res.is_alarm and res.alarm_at >= 4


def test_grown_clusters_names_the_new_kind():
    rng = np.random.default_rng(5)
    ref = _blobs(rng, 100, 0.0)
    win = np.vstack([_blobs(rng, 60, 0.0), _blobs(rng, 40, 6.0)])
    ref_t = ["protein binding in cells"] * 100
    win_t = ["protein binding in cells"] * 60 + ["who won the football world cup"] * 40
    cl = grown_clusters(ref, win, ref_t, win_t, n_clusters=2)
    assert cl[0].is_new and cl[0].window_share == pytest.approx(0.4)
    assert "football" in cl[0].top_terms and "who won the football world cup" in cl[0].examples


def test_weighted_estimate_unbiased_with_known_weights():
    # eval x ~ N(0,1), traffic x ~ N(0.5,1): the true ratio is exp(0.5 x - 0.125); metric = sigmoid(x) + noise
    ests = []
    truth = np.mean(1 / (1 + np.exp(-np.random.default_rng(0).normal(0.5, 1, 400000))))
    for s in range(200):
        r = np.random.default_rng(s)
        x = r.normal(size=400)
        y = 1 / (1 + np.exp(-x)) + r.normal(0, 0.1, size=400)
        ests.append(weighted_estimate(y, np.exp(0.5 * x - 0.125), n_boot=10)[0])
    stale = np.mean(1 / (1 + np.exp(-np.random.default_rng(0).normal(0, 1, 400000))))
    assert abs(np.mean(ests) - truth) < 0.003 < abs(stale - truth) - 0.05


def test_importance_weighted_estimate_tracks_covariate_shift():
    rng = np.random.default_rng(6)
    e = rng.normal(size=(600, 4))
    ye = (1 / (1 + np.exp(-2 * e[:, 0])) > rng.random(600)).astype(float)
    t = rng.normal(size=(600, 4)) + np.array([0.7, 0, 0, 0])
    truth = np.mean(1 / (1 + np.exp(-2 * (rng.normal(size=200000) + 0.7))))
    r = importance_weighted_estimate(e, ye, t, max_uncovered=0.1)
    assert not r.is_refused
    assert abs(r.estimate - truth) < abs(ye.mean() - truth)
    assert r.lower <= truth <= r.upper and 0 < r.ess < 600


def test_refusal_on_unsupported_traffic():
    rng = np.random.default_rng(7)
    e = _kind(rng, 300)
    t = np.vstack([_kind(rng, 140), _kind(rng, 60, new=True)])  # 30% far outside the eval set
    r = importance_weighted_estimate(e, rng.random(300), t)
    assert r.is_refused and np.isnan(r.estimate)
    assert 0.28 <= r.uncovered_share <= 0.33 and "does not cover 3" in r.message


def test_refresh_picks_uncovered_first_and_beats_random_labelling():
    errs_pick, errs_rand = [], []
    for s in range(8):
        rng = np.random.default_rng(s)
        e = _kind(rng, 300)
        ye = rng.binomial(1, 0.7, 300).astype(float)
        old = _kind(rng, 700)
        new = _kind(rng, 300, new=True)
        t = np.vstack([old, new])
        yt = np.r_[rng.binomial(1, 0.7, 700), rng.binomial(1, 0.2, 300)].astype(float)
        truth = 0.7 * 0.7 + 0.3 * 0.2
        plan = pick_for_labelling(e, t, budget=40, seed=s)
        assert plan.uncovered[:30].all()  # the uncovered 30% is labelled first
        est, lo, hi = refreshed_estimate(e, ye, t, plan, yt[plan.indices], n_boot=200, seed=s)
        errs_pick.append(abs(est - truth))
        errs_rand.append(abs(yt[rng.choice(len(t), 40, replace=False)].mean() - truth))
    assert np.mean(errs_pick) < np.mean(errs_rand)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(8)
    with pytest.raises(ValueError, match="features"):
        ClassifierDrift(rng.normal(size=(20, 3))).predict(rng.normal(size=(20, 4)))
    with pytest.raises(ValueError, match="NaN"):
        ClassifierDrift(np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="eval_metric"):
        importance_weighted_estimate(rng.normal(size=(20, 3)), np.ones(19), rng.normal(size=(20, 3)))


def test_distance_model_silent_on_clean_and_fires_on_a_diffuse_new_kind():
    rng = np.random.default_rng(9)
    ref = _kind(rng, 300)
    det = ClassifierDrift(ref, model="distance", k=1)
    assert not det.predict(_kind(rng, 300)).is_drift
    assert det.predict(np.vstack([_kind(rng, 270), _kind(rng, 30, new=True)])).is_drift  # 10% new kind


def test_cluster_density_ratio_follows_a_growing_topic():
    from monitor.eval_drift import density_ratio, domain_probabilities

    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    a[:, 0] += 6.0
    b[:, 4] += 6.0
    e = np.vstack([a[:270], b[:30]])        # topic b: 10% of the eval set
    t = np.vstack([a[270:370], b[30:130]])  # ... and 50% of traffic: true ratio 5 on b, 0.56 on a
    pe, _ = domain_probabilities(e, t, model="cluster", k=2)
    w = density_ratio(pe, len(e), len(t))
    assert 3.5 < w[270:].mean() < 6.5 and 0.4 < w[:270].mean() < 0.75


# ---- round 2: exceedance test, model-assisted estimate and refresh ------------------------------------


def test_exceedance_p_value_exact_on_a_small_case_and_valid_on_same_distribution():
    from monitor.eval_drift import exceedance_p_value

    # both window rows above the single null maximum: 1 of C(6, 2) = 15 equally likely arrangements
    assert exceedance_p_value([0.1, 0.2, 0.3, 0.4], [0.5, 0.6], rank=1) == (2, pytest.approx(1 / 15))
    rng = np.random.default_rng(11)
    ps = np.array([exceedance_p_value(rng.normal(size=150), rng.normal(size=400), rank=2)[1] for _ in range(3000)])
    assert np.mean(ps < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 3000)  # level held (discrete, so at most)
    assert np.mean(ps < 0.05) > 0.02  # ... and not trivially conservative
    with pytest.raises(ValueError, match="rank"):
        exceedance_p_value([0.1, 0.2], [0.3], rank=3)


def test_exceedance_tail_test_silent_on_same_distribution_split():
    rng = np.random.default_rng(12)
    pool = _kind(rng, 4000)
    fired = 0
    for s in range(30):
        idx = np.random.default_rng(s).permutation(len(pool))
        det = ClassifierDrift(pool[idx[:300]], p_val=0.05, model="distance", k=1, tail_test="exceedance", seed=s)
        fired += det.predict(pool[idx[300:700]]).is_drift
    assert clopper_pearson(fired, 30).estimate <= 0.10  # level 0.05; 30 splits


def test_exceedance_finds_a_7pct_new_kind_that_the_top_share_test_misses():
    rng = np.random.default_rng(13)
    hits = {"top": 0, "exceedance": 0}
    for s in range(10):
        r = np.random.default_rng(100 + s)
        ref = _kind(r, 300)
        win = np.vstack([_kind(r, 370), _kind(r, 30, new=True)])  # 7.5% new kind, far outside the eval set
        for tail in hits:
            det = ClassifierDrift(ref, p_val=0.05 / 12, model="distance", k=1, tail_test=tail, seed=s)
            hits[tail] += det.predict(win).is_drift
    assert hits["exceedance"] == 10 and hits["top"] < hits["exceedance"]
    with pytest.raises(ValueError, match="tail_test"):
        ClassifierDrift(rng.normal(size=(20, 3)), tail_test="max")


def _shifted_metric_case(seed: int):
    """Traffic has more of the hard topic B than the eval set, and the eval set's B rows are the easier B
    queries (a lucky draw the embedding does not show). A label-free signal ``s`` (a query-performance
    predictor) sees each row's difficulty; the metric is ``s`` + noise on every row, eval or traffic."""
    rng = np.random.default_rng(seed)

    def rows(n_a, n_b, b_mean):
        za, zb = rng.normal(size=(n_a, 8)), rng.normal(size=(n_b, 8))
        za[:, 0] += 3.0
        zb[:, 1] += 3.0
        z = np.vstack([za, zb])
        s = np.r_[rng.normal(0.8, 0.1, n_a), rng.normal(b_mean, 0.1, n_b)]
        y = np.clip(s + rng.normal(0, 0.05, n_a + n_b), 0, 1)
        return z, s[:, None], y

    e, se, ye = rows(240, 60, 0.5)   # eval: 20% B, and its B rows easier than B traffic
    t, st, yt = rows(200, 200, 0.4)  # traffic: 50% B
    return e, se, ye, t, st, yt


def test_model_assisted_estimate_beats_reweighting_when_eval_rows_are_a_lucky_draw():
    from monitor.eval_drift import cross_fitted_predictions, model_assisted_estimate

    e, se, ye, t, st, yt = _shifted_metric_case(14)
    truth = yt.mean()
    pe, pt = cross_fitted_predictions(se, ye, st)
    ma = model_assisted_estimate(e, ye, pe, t, pt, max_uncovered=0.2, n_boot=200)
    iw = importance_weighted_estimate(e, ye, t, max_uncovered=0.2, model="knn", k=20, n_boot=50)
    assert abs(ye.mean() - truth) > 0.1  # the stale metric is far off
    assert not ma.is_refused and abs(ma.estimate - truth) < 0.03 < abs(iw.estimate - truth)
    assert ma.lower <= truth <= ma.upper and 0 < ma.ess < len(e)
    # a predictor off by a constant changes nothing: the weighted eval residual removes its mean error
    ma2 = model_assisted_estimate(e, ye, pe + 0.3, t, pt + 0.3, max_uncovered=0.2, n_boot=10)
    assert ma2.estimate == pytest.approx(ma.estimate, abs=1e-9)


def test_model_assisted_estimate_refuses_on_unsupported_traffic():
    from monitor.eval_drift import model_assisted_estimate

    rng = np.random.default_rng(15)
    e = _kind(rng, 300)
    t = np.vstack([_kind(rng, 140), _kind(rng, 60, new=True)])
    r = model_assisted_estimate(e, rng.random(300), rng.random(300), t, rng.random(200))
    assert r.is_refused and np.isnan(r.estimate) and "does not cover 3" in r.message
    with pytest.raises(ValueError, match="traffic_pred"):
        model_assisted_estimate(e, rng.random(300), rng.random(300), t, rng.random(199))


def test_cross_fitted_predictions_are_out_of_fold():
    from monitor.eval_drift import cross_fitted_predictions

    rng = np.random.default_rng(16)
    x, y = rng.normal(size=(200, 30)), rng.normal(size=200)  # pure noise: in-sample fits it, out-of-fold cannot
    pe, po = cross_fitted_predictions(x, y, rng.normal(size=(50, 30)))
    assert pe.shape == (200,) and po.shape == (50,)
    assert np.corrcoef(pe, y)[0, 1] < 0.2
    with pytest.raises(ValueError, match="other_features"):
        cross_fitted_predictions(x, y, rng.normal(size=(5, 29)))


def test_proportional_plan_follows_stratum_sizes():
    rng = np.random.default_rng(17)
    e = _kind(rng, 300)
    t = np.vstack([_kind(rng, 700), _kind(rng, 300, new=True)])
    plan = pick_for_labelling(e, t, budget=100, seed=0, strategy="proportional")
    assert len(set(plan.indices.tolist())) == 100
    assert 25 <= plan.uncovered.sum() <= 35  # ~30% of the window is uncovered, so ~30 of 100 labels
    first = pick_for_labelling(e, t, budget=100, seed=0)
    assert first.uncovered.all()  # uncovered-first spends the whole budget there
    with pytest.raises(ValueError, match="strategy"):
        pick_for_labelling(e, t, budget=10, strategy="greedy")


def test_model_assisted_refresh_known_answers():
    from monitor.eval_drift import cross_fitted_predictions, model_assisted_refresh

    e, se, ye, t, st, yt = _shifted_metric_case(18)
    rng = np.random.default_rng(18)
    t = np.vstack([t, _kind(rng, 100, new=True) * 3])  # plus an uncovered kind, its signal uninformative
    st = np.vstack([st, np.full((100, 1), 0.6)])
    yt = np.r_[yt, rng.binomial(1, 0.9, 100).astype(float)]
    pe, pt = cross_fitted_predictions(se, ye, st)
    plan_all = pick_for_labelling(e, t, budget=len(t), seed=0, strategy="proportional")
    est, lo, hi = model_assisted_refresh(e, ye, pe, t, pt, plan_all, yt[plan_all.indices], n_boot=20)
    assert est == pytest.approx(yt.mean(), abs=1e-9)  # every row labelled: the window mean itself
    errs = []
    for s in range(5):
        plan = pick_for_labelling(e, t, budget=60, seed=s, strategy="proportional")
        est, lo, hi = model_assisted_refresh(e, ye, pe, t, pt, plan, yt[plan.indices], n_boot=100, seed=s)
        errs.append(abs(est - yt.mean()))
    assert np.mean(errs) < 0.03 < abs(ye.mean() - yt.mean())


def test_neighbour_feature_never_sees_the_rows_own_label():
    from monitor.eval_drift import cross_fitted_predictions

    rng = np.random.default_rng(19)
    emb = rng.normal(size=(120, 8))
    x, y = rng.normal(size=(120, 3)), rng.random(120)
    other = rng.normal(size=(30, 8))
    kw = dict(eval_emb=emb, other_emb=other, neighbour_k=10, seed=3)
    pe, po = cross_fitted_predictions(x, y, rng.normal(size=(30, 3)), **kw)
    assert pe.shape == (120,) and po.shape == (30,)
    # a label is in its own out-of-fold prediction neither directly nor through a neighbour mean:
    # change one eval row's label and that row's prediction stays exactly where it was
    for i in (0, 57, 119):
        y2 = y.copy()
        y2[i] += 5.0
        pe2, _ = cross_fitted_predictions(x, y2, rng.normal(size=(30, 3)), **kw)
        assert pe2[i] == pytest.approx(pe[i], abs=1e-12)
    with pytest.raises(ValueError, match="neighbour_k"):
        cross_fitted_predictions(x, y, rng.normal(size=(30, 3)), neighbour_k=10)
    with pytest.raises(ValueError, match="other_emb"):
        cross_fitted_predictions(x, y, rng.normal(size=(30, 3)), eval_emb=emb, other_emb=other[:5], neighbour_k=10)


def test_neighbour_feature_finds_a_hard_region_the_signals_miss():
    from monitor.eval_drift import cross_fitted_predictions

    rng = np.random.default_rng(20)
    hard = rng.random(400) < 0.3                      # a topic where the metric is lower; the signal cannot tell
    emb = rng.normal(size=(400, 6)) * 0.3 + np.where(hard[:, None], 1.0, -1.0) * np.eye(6)[0]
    sig = rng.normal(size=(400, 1))
    y = np.clip(0.7 - 0.3 * hard + 0.1 * sig[:, 0] + rng.normal(0, 0.1, 400), 0, 1)
    e, t = slice(0, 200), slice(200, 400)
    pe0, pt0 = cross_fitted_predictions(sig[e], y[e], sig[t])
    pe1, pt1 = cross_fitted_predictions(sig[e], y[e], sig[t], eval_emb=emb[e], other_emb=emb[t], neighbour_k=15)
    err = lambda p: np.sqrt(np.mean((p - y[t]) ** 2))  # noqa: E731
    assert err(pt1) < 0.8 * err(pt0)
