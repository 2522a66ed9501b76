"""Eval drift: is the eval set still a sample of today's traffic, what is today's metric, what to label next.

Failure mode served: Eval Drift (I) -- offline metrics climb every release while users say it feels
worse, because the eval set was sampled at time T from a query distribution that has since moved.
Mechanism, on query embeddings (any encoder; numpy, scipy and scikit-learn only):

* :class:`ClassifierDrift` -- a domain classifier (logistic regression, eval = 0, traffic = 1; or kNN,
  or a nearest-eval-distance novelty score) as a
  two-sample test (Lopez-Paz & Oquab, ICLR 2017). ``test="heldout"``: fit on half of each sample,
  AUC on the other half, exact one-sided Mann-Whitney p-value combined (Bonferroni) with a
  hypergeometric test on the top 10% of held-out scores (the held-out scores are independent of the
  fit, so no permutations are needed). ``test="permutation"``: cross-validated AUC against
  ``n_permutations`` label shuffles. :class:`monitor.drift.MMDDrift` is the kernel companion.
* :class:`SequentialDrift` -- one test per window of traffic; each window at level
  ``alpha / horizon`` (Bonferroni), so P(any false alarm within ``horizon`` windows) <= ``alpha``.
* :func:`grown_clusters` -- KMeans on eval + traffic embeddings; clusters whose share grew or that
  appeared, named by their top TF-IDF terms, with example queries.
* :func:`importance_weighted_estimate` -- today's metric from the old labelled eval set, each row
  weighted by the density ratio ``p/(1-p) * n_eval/n_traffic`` from cross-fitted classifier
  probabilities (logistic or kNN), clipped at ``clip``; effective sample size; bootstrap interval.
  It REFUSES (no number, a message "the eval set does not cover N% of traffic") when more than
  ``max_uncovered`` of traffic lies outside the eval set's support (:func:`uncovered_mask`: farther
  from every eval query than 99% of eval queries are from their nearest neighbour): importance
  weighting cannot extrapolate where the eval density is negligible.
* :func:`pick_for_labelling` / :func:`refreshed_estimate` -- which traffic queries to label
  (uncovered regions first, or proportional to cluster x coverage strata) and today's metric from old + new labels.
* :func:`exceedance_p_value` -- the exact tail test the novelty detector uses (``tail_test="exceedance"``):
  the count of window rows above a high quantile of held-out eval novelty scores, negative-hypergeometric
  under the null.
* :func:`cross_fitted_predictions`, :func:`model_assisted_estimate`, :func:`model_assisted_refresh` -- a
  doubly robust estimate: a predictor of the per-query metric from label-free signals (retrieval scores,
  query-result agreement; a cross-encoder's judgement would serve too; optionally the mean metric of the
  query's nearest eval queries, built inside the cross-fitting), evaluated on every traffic query,
  plus the density-ratio-weighted eval residuals (and, after a refresh, the new labels' residuals per stratum).

Proved by ``tests/unit/test_monitor_eval_drift.py`` (silent on a same-distribution split, fires on a
shifted one, refusal on unsupported traffic, unbiased on a synthetic known-weight case) and by
``ragfix bench eval-drift`` on a real SciFact -> NQ stream. Leaves out: label/concept shift (the
weighting assumes P(metric | query) did not change, as every covariate-shift estimator does),
learned-kernel tests, calibrated density-ratio models (KLIEP, uLSIF).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import numpy as np
from scipy import stats

from monitor.bounds import bootstrap_interval
from monitor.types import AlarmResult, DriftResult

__all__ = [
    "exceedance_p_value", "ClassifierDrift", "SequentialDrift", "ClusterShift", "grown_clusters", "domain_probabilities",
    "density_ratio", "uncovered_mask", "weighted_estimate", "EvalEstimate", "importance_weighted_estimate", "RefreshPlan",
    "pick_for_labelling", "refreshed_estimate", "cross_fitted_predictions", "model_assisted_estimate",
    "model_assisted_refresh", "signals_estimate", "PREDICTOR_SETTINGS", "WEIGHT_SETTINGS",
]

# The settings `ragfix bench eval-drift` measures and `ragfix diagnose eval-drift` ships, chosen on the bench's
# development stories (seeds 100-139; docs/eval-drift.md): the predictor adds the cross-fitted mean metric of
# the 20 nearest eval queries to the caller's signals; the density ratio is the kNN one with k = 20.
PREDICTOR_SETTINGS = {"neighbour_k": 20}
WEIGHT_SETTINGS = {"model": "knn", "k": 20}


def _emb(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (n, d) embeddings, got shape {a.shape}")
    if a.shape[0] < 2:
        raise ValueError(f"{name} has {a.shape[0]} rows; a two-sample test needs at least 2 per side")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} has NaN or infinite values; re-encode those queries rather than dropping them")
    return a


def _same_dim(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"window has {b.shape[1]} features, reference has {a.shape[1]}; embed both with one encoder")


def _clf(C: float, seed: int, n_components: int | None, shape: tuple[int, int]):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # subtle: unit-norm embeddings have per-feature scales ~ 1/sqrt(d); without standardising, any usual C
    # regularises the classifier to a constant and both the test and the density ratio go blind.
    # PCA (fitted on the training rows only) to ``n_components``: with a few hundred rows per side a
    # 384-d classifier fits noise, which blinds the held-out test and scatters the density ratios.
    steps = [StandardScaler()]
    if n_components is not None and min(shape) - 1 > n_components:
        steps += [PCA(n_components=n_components, random_state=seed), StandardScaler()]
    return make_pipeline(*steps, LogisticRegression(C=C, max_iter=2000, random_state=seed))


def _knn_proba(z_fit: np.ndarray, y_fit: np.ndarray, z_new: np.ndarray | None, k: int) -> np.ndarray:
    """Share of traffic among the ``k`` nearest fitted rows (cosine); ``z_new=None``: leave-one-out on ``z_fit``."""
    from sklearn.neighbors import NearestNeighbors

    k = int(min(k, len(z_fit) - 1))
    nn = NearestNeighbors(n_neighbors=k + (z_new is None), metric="cosine").fit(z_fit)
    idx = nn.kneighbors(z_fit if z_new is None else z_new, return_distance=False)
    if z_new is None:
        idx = idx[:, 1:]  # subtle: drop the row itself (ties at distance 0 may put a duplicate first; same label odds)
    return y_fit[idx].mean(axis=1)


def _nn_distance(reference: np.ndarray, x: np.ndarray, k: int, leave_one_out: bool = False) -> np.ndarray:
    """Mean cosine distance from each row of ``x`` to its ``k`` nearest ``reference`` rows."""
    from sklearn.neighbors import NearestNeighbors

    k = int(min(k, len(reference) - leave_one_out))
    nn = NearestNeighbors(n_neighbors=k + leave_one_out, metric="cosine").fit(reference)
    dist, _ = nn.kneighbors(x)
    return dist[:, int(leave_one_out):].mean(axis=1)


def uncovered_mask(eval_emb, traffic_emb, quantile: float = 0.99, k: int = 1) -> tuple[np.ndarray, float]:
    """Traffic rows outside the eval set's support: farther from every eval row than ``quantile`` of
    eval rows are from their nearest other eval row (so ~``1 - quantile`` of same-distribution traffic
    is flagged by chance). Returns ``(mask, radius)``."""
    e, t = _emb(eval_emb, "eval_emb"), _emb(traffic_emb, "traffic_emb")
    _same_dim(e, t)
    if not (0.5 <= quantile < 1.0):
        raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
    radius = float(np.quantile(_nn_distance(e, e, k, leave_one_out=True), quantile))
    return _nn_distance(e, t, k) > radius, radius


def domain_probabilities(reference, x, C: float = 0.1, n_folds: int = 5, seed: int = 0,
                         n_components: int | None = 20, model: str = "logistic", k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted P(traffic | z) for every reference row and every window row.

    ``model="logistic"``: each row's probability comes from a logistic regression that did not see it
    (``n_folds``-fold), so the weights built from them are not fitted to the rows they weight.
    ``model="knn"``: the traffic share among the row's ``k`` nearest other rows (leave-one-out) -- local,
    so it sees a small new cluster that a linear classifier averages away; 0 eval neighbours = uncovered.
    ``model="cluster"``: KMeans into ``k`` clusters on eval + traffic; the leave-one-out traffic share of
    the row's cluster (a histogram density ratio: right when the shift is topics growing or shrinking).
    Returns ``(p_reference, p_window)``.
    """
    from sklearn.model_selection import StratifiedKFold

    r, w = _emb(reference, "reference"), _emb(x, "window")
    _same_dim(r, w)
    z = np.vstack([r, w])
    y = np.r_[np.zeros(len(r)), np.ones(len(w))]
    if model == "knn":
        p = _knn_proba(z, y, None, k)
        return p[: len(r)], p[len(r):]
    if model == "cluster":
        from sklearn.cluster import KMeans

        lab = KMeans(n_clusters=int(min(k, len(z) // 2)), n_init=4, random_state=seed).fit_predict(z)
        n_c = np.bincount(lab).astype(float)
        t_c = np.bincount(lab, weights=y)
        prior = len(w) / len(z)
        # leave-one-out share of traffic in the row's cluster, one pseudo-row at the prior
        p = (t_c[lab] - y + prior) / (n_c[lab] - 1 + 1)
        return p[: len(r)], p[len(r):]
    if model != "logistic":
        raise ValueError(f"model must be 'logistic', 'knn' or 'cluster', got {model!r}")
    folds = int(min(n_folds, len(r), len(w)))
    if folds < 2:
        raise ValueError("domain_probabilities needs at least 2 rows on each side")
    p = np.empty(len(z))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(z, y):
        p[te] = _clf(C, seed, n_components, z[tr].shape).fit(z[tr], y[tr]).predict_proba(z[te])[:, 1]
    return p[: len(r)], p[len(r):]


def density_ratio(p: np.ndarray, n_reference: int, n_window: int) -> np.ndarray:
    """traffic density / eval density at each point: ``p / (1 - p) * n_reference / n_window``."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    return p / (1.0 - p) * (n_reference / n_window)


def _auc(scores_ref: np.ndarray, scores_win: np.ndarray) -> float:
    u = stats.mannwhitneyu(scores_win, scores_ref, alternative="greater").statistic
    return float(u / (len(scores_ref) * len(scores_win)))


def exceedance_p_value(null_scores, window_scores, rank: int) -> tuple[int, float]:
    """Exact p-value of "the window has too many rows above the ``rank``-th largest null score".

    ``null_scores`` (n rows) and ``window_scores`` (m rows) must be i.i.d. from one continuous
    distribution under the null (e.g. novelty scores of held-out eval rows and of traffic rows against
    the same fitted reference). The count K of window rows above the ``rank``-th largest null score
    then follows a negative hypergeometric law, ``P(K=k) = C(k+r-1, k) C(n-r+m-k, m-k) / C(n+m, m)``,
    whatever the score's distribution (the null quantile's own sampling noise is inside that law).
    A new kind of query that is 5-10% of a window and lies outside the eval set puts almost all of its
    rows above a high null quantile, where a rank-sum test (AUC) barely moves. Returns ``(K, p)``.

    >>> exceedance_p_value([0.1, 0.2, 0.3, 0.4], [0.5, 0.6], rank=1)
    (2, 0.06666666666666667)
    """
    from scipy.special import gammaln

    sn = np.asarray(null_scores, dtype=np.float64).ravel()
    sw = np.asarray(window_scores, dtype=np.float64).ravel()
    n, m, r = len(sn), len(sw), int(rank)
    if not (1 <= r <= n) or m < 1:
        raise ValueError(f"exceedance_p_value needs 1 <= rank <= {n} null scores and >= 1 window score, got rank={rank}, "
                         f"{m} window scores")
    thr = np.sort(sn)[n - r]
    k_obs = int((sw > thr).sum())
    k = np.arange(k_obs, m + 1)

    def lc(a, b):  # log C(a, b)
        return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

    logp = lc(k + r - 1, k) + lc(n - r + m - k, m - k) - lc(n + m, m)
    return k_obs, float(min(1.0, np.exp(logp).sum()))


class ClassifierDrift:
    """Domain-classifier two-sample test on embeddings.

    Args:
        reference: ``(n, d)`` eval-set query embeddings.
        p_val: significance level; fires when the p-value is below it.
        test: ``"heldout"`` (split in half; on the held-out half, the smaller of the exact Mann-Whitney
            p (AUC) and a hypergeometric p on the traffic count in the top ``tail`` of scores, x2) or
            ``"permutation"`` (``n_folds``-fold cross-validated AUC vs ``n_permutations`` shuffles).
        C: inverse L2 strength of the logistic regression (on standardised features).
        n_components: PCA dimensions the logistic classifier sees (``None``: all).
        model: ``"logistic"`` or ``"knn"`` (the traffic share among the ``k`` nearest training rows,
            cosine) or ``"distance"`` (mean cosine distance to the ``k`` nearest training-half eval rows: a
            novelty score, no traffic rows needed to fit). On a few hundred 384-d rows a linear classifier
            cannot find a new kind that is 10% of the window (its direction drowns in noise), and a new kind
            that is diffuse (NQ questions on every topic) is no cluster for kNN; the distance score finds it
            (``ragfix bench eval-drift`` measures all three).
        seed: split / fold / permutation seed (results are reproducible).
        tail_test: the second held-out test combined with the AUC test: ``"top"`` (hypergeometric count of
            traffic rows among the top ``tail`` of pooled held-out scores) or ``"exceedance"`` (exact count of
            traffic rows above the held-out eval rows' ``exceed_quantile`` score, :func:`exceedance_p_value`;
            much more power when a new kind is a few % of the window and lies outside the eval set: measured
            in ``ragfix bench eval-drift``).
        exceed_quantile: the null quantile of the exceedance test (rank ``max(1, round((1-q) n_null))``).

    The statistic is the AUC (0.5 = indistinguishable). Evidently alarms at AUC > 0.55 with no
    p-value; here the decision rule is the p-value, so the false-alarm rate is the level.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = ClassifierDrift(rng.normal(size=(300, 8)))
    >>> det.predict(rng.normal(size=(200, 8))).is_drift, det.predict(rng.normal(0.5, size=(200, 8))).is_drift
    (False, True)
    """

    def __init__(self, reference, p_val: float = 0.05, test: str = "heldout", C: float = 1.0, n_folds: int = 5,
                 n_permutations: int = 100, n_components: int | None = 20, tail: float = 0.1, model: str = "logistic",
                 k: int = 10, seed: int = 0, tail_test: str = "top", exceed_quantile: float = 0.99) -> None:
        if not (0.0 < p_val < 1.0):
            raise ValueError(f"p_val (significance level) must be in (0, 1), got {p_val}")
        if test not in ("heldout", "permutation"):
            raise ValueError(f"test must be 'heldout' or 'permutation', got {test!r}")
        if n_permutations < 1 or n_folds < 2:
            raise ValueError(f"need n_permutations >= 1 and n_folds >= 2, got {n_permutations}, {n_folds}")
        self.reference = _emb(reference, "reference")
        self.p_val, self.test, self.C, self.n_folds = p_val, test, C, n_folds
        if model not in ("logistic", "knn", "distance"):
            raise ValueError(f"model must be 'logistic', 'knn' or 'distance', got {model!r}")
        if test == "permutation" and model != "logistic":
            raise ValueError(f"the permutation test runs the logistic classifier; use test='heldout' with model={model!r}")
        self.model, self.k = model, k
        if not (0.0 < tail < 1.0):
            raise ValueError(f"tail (share of held-out scores in the tail test) must be in (0, 1), got {tail}")
        self.n_permutations, self.n_components, self.tail, self.seed = n_permutations, n_components, tail, seed
        if tail_test not in ("top", "exceedance"):
            raise ValueError(f"tail_test must be 'top' or 'exceedance', got {tail_test!r}")
        if not (0.5 <= exceed_quantile < 1.0):
            raise ValueError(f"exceed_quantile must be in [0.5, 1), got {exceed_quantile}")
        self.tail_test, self.exceed_quantile = tail_test, exceed_quantile

    def _heldout(self, w: np.ndarray) -> tuple[float, float]:
        rng = np.random.default_rng(self.seed)
        r = self.reference
        ri, wi = rng.permutation(len(r)), rng.permutation(len(w))
        rh, wh = len(r) // 2, len(w) // 2
        if rh < 1 or wh < 1 or len(r) - rh < 1 or len(w) - wh < 1:
            raise ValueError("the held-out test needs at least 2 rows on each side")
        z = np.vstack([r[ri[:rh]], w[wi[:wh]]])
        y = np.r_[np.zeros(rh), np.ones(wh)]
        if self.model == "distance":
            # no traffic rows are fitted, so every window row is scored (the held-out eval half is the null)
            sr, sw = _nn_distance(r[ri[:rh]], r[ri[rh:]], self.k), _nn_distance(r[ri[:rh]], w, self.k)
        elif self.model == "knn":
            sr, sw = _knn_proba(z, y, r[ri[rh:]], self.k), _knn_proba(z, y, w[wi[wh:]], self.k)
        else:
            m = _clf(self.C, self.seed, self.n_components, z.shape).fit(z, y)
            sr, sw = m.decision_function(r[ri[rh:]]), m.decision_function(w[wi[wh:]])
        res = stats.mannwhitneyu(sw, sr, alternative="greater")
        if self.tail_test == "exceedance":
            _, p_tail = exceedance_p_value(sr, sw, max(1, int(round((1 - self.exceed_quantile) * len(sr)))))
            return float(res.statistic / (len(sr) * len(sw))), float(min(1.0, 2.0 * min(res.pvalue, p_tail)))
        # A new kind that is a small share of the window moves the AUC little but fills the top of the
        # ranking: a hypergeometric test on the traffic count among the top ``tail`` of held-out scores.
        pooled = np.r_[sr, sw]
        n_top = max(1, int(round(self.tail * len(pooled))))
        top = np.argsort(-pooled, kind="stable")[:n_top]
        hits = int((top >= len(sr)).sum())
        p_tail = float(stats.hypergeom.sf(hits - 1, len(pooled), len(sw), n_top))
        return float(res.statistic / (len(sr) * len(sw))), float(min(1.0, 2.0 * min(res.pvalue, p_tail)))

    def _cv_auc(self, z: np.ndarray, y: np.ndarray, seed: int) -> float:
        from sklearn.model_selection import StratifiedKFold

        s = np.empty(len(z))
        for tr, te in StratifiedKFold(self.n_folds, shuffle=True, random_state=seed).split(z, y):
            s[te] = _clf(self.C, self.seed, self.n_components, z[tr].shape).fit(z[tr], y[tr]).decision_function(z[te])
        return _auc(s[y == 0], s[y == 1])

    def _permutation(self, w: np.ndarray) -> tuple[float, float]:
        z = np.vstack([self.reference, w])
        y = np.r_[np.zeros(len(self.reference)), np.ones(len(w))]
        obs = self._cv_auc(z, y, self.seed)
        rng = np.random.default_rng(self.seed)
        hits = sum(self._cv_auc(z, rng.permutation(y), self.seed) >= obs for _ in range(self.n_permutations))
        return obs, (1 + hits) / (1 + self.n_permutations)

    def score(self, x) -> float:
        """The AUC of the domain classifier (0.5 = eval and window indistinguishable)."""
        return self.predict(x).statistic

    def predict(self, x) -> DriftResult:
        w = _emb(x, "window")
        _same_dim(self.reference, w)
        auc, p = self._heldout(w) if self.test == "heldout" else self._permutation(w)
        return DriftResult(p < self.p_val, auc, p, self.p_val,
                           {"detector": "classifier", "test": self.test, "n_reference": len(self.reference),
                            "n_window": len(w), "C": self.C, "model": self.model})


class SequentialDrift:
    """Run a two-sample detector on each window of a stream; Bonferroni over ``horizon`` windows.

    Args:
        reference: eval-set embeddings.
        horizon: number of windows the false-alarm guarantee covers (e.g. 52 weekly windows).
        alpha: P(at least one false alarm within ``horizon`` same-distribution windows) <= alpha;
            each window is tested at ``alpha / horizon``.
        detector: ``"classifier"`` (:class:`ClassifierDrift`, held-out) or ``"mmd"`` (:class:`MMDDrift`).

    ``update(window)`` returns :class:`~monitor.types.AlarmResult` (``n_seen`` = windows seen,
    ``alarm_at`` = 1-based window of the first alarm; statistic = the last window's AUC or MMD^2).
    """

    def __init__(self, reference, horizon: int, alpha: float = 0.05, detector: str = "classifier", seed: int = 0,
                 **detector_kwargs: Any) -> None:
        if horizon < 1 or not (0.0 < alpha < 1.0):
            raise ValueError(f"need horizon >= 1 and 0 < alpha < 1, got horizon={horizon}, alpha={alpha}")
        level = alpha / horizon
        if detector == "classifier":
            self.detector = ClassifierDrift(reference, p_val=level, seed=seed, **detector_kwargs)
        elif detector == "mmd":
            from monitor.drift import MMDDrift

            self.detector = MMDDrift(reference, p_val=level, seed=seed,
                                     **{"n_permutations": max(int(math.ceil(2 * horizon / alpha)), 100), **detector_kwargs})
        else:
            raise ValueError(f"detector must be 'classifier' or 'mmd', got {detector!r}")
        self.horizon, self.alpha, self.level, self.kind = horizon, alpha, level, detector
        self.reset()

    def reset(self) -> None:
        self.n_seen_ = 0
        self.alarm_at_: int | None = None
        self.last_: DriftResult | None = None

    def update(self, window) -> AlarmResult:
        r = self.detector.predict(window)
        self.n_seen_ += 1
        self.last_ = r
        if self.alarm_at_ is None and r.is_drift:
            self.alarm_at_ = self.n_seen_
        return AlarmResult(self.alarm_at_ is not None, float(r.statistic), self.level, self.n_seen_, self.alarm_at_,
                           {"alarm": "windowed_" + self.kind, "horizon": self.horizon, "alpha": self.alpha,
                            "p_val": r.p_val})


class ClusterShift(NamedTuple):
    """One cluster of eval + traffic queries: its share in each, and what it is about."""

    cluster: int
    reference_share: float
    window_share: float
    growth: float
    is_new: bool
    top_terms: list[str]
    examples: list[str]


def _top_terms(texts: Sequence[str], labels: np.ndarray, k: int, n_terms: int) -> list[list[str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    if not any(t.strip() for t in texts):
        return [[] for _ in range(k)]
    vec = TfidfVectorizer(stop_words="english", min_df=1, max_features=20000, token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    try:
        m = vec.fit_transform(texts)
    except ValueError:  # only stop words
        return [[] for _ in range(k)]
    vocab = np.array(vec.get_feature_names_out())
    overall = np.asarray(m.mean(axis=0)).ravel()
    out = []
    for c in range(k):
        rows = labels == c
        if not rows.any():
            out.append([])
            continue
        # subtle: rank by lift over the overall mean, else every cluster is named by the corpus's common words
        score = np.asarray(m[rows].mean(axis=0)).ravel() - overall
        out.append([str(t) for t in vocab[np.argsort(-score)[:n_terms]] if score[vec.vocabulary_[t]] > 0])
    return out


def grown_clusters(reference, x, reference_texts: Sequence[str], window_texts: Sequence[str], n_clusters: int = 8,
                   n_terms: int = 5, n_examples: int = 3, new_share: float = 0.01, seed: int = 0) -> list[ClusterShift]:
    """KMeans on eval + window embeddings; clusters sorted by growth (window share - eval share).

    ``is_new`` marks a cluster holding under ``new_share`` of the eval set but at least 5% of the window.
    Examples are window queries nearest the cluster centre.
    """
    from sklearn.cluster import KMeans

    r, w = _emb(reference, "reference"), _emb(x, "window")
    _same_dim(r, w)
    if len(reference_texts) != len(r) or len(window_texts) != len(w):
        raise ValueError(f"texts and embeddings differ in length: reference {len(reference_texts)} vs {len(r)}, "
                         f"window {len(window_texts)} vs {len(w)}")
    z = np.vstack([r, w])
    k = int(max(1, min(n_clusters, len(z) // 2)))
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z)
    lab = km.labels_
    lr, lw = lab[: len(r)], lab[len(r):]
    terms = _top_terms(list(reference_texts) + list(window_texts), lab, k, n_terms)
    out = []
    for c in range(k):
        rs, ws = float(np.mean(lr == c)), float(np.mean(lw == c))
        idx = np.flatnonzero(lw == c)
        if idx.size:
            d = ((w[idx] - km.cluster_centers_[c]) ** 2).sum(1)
            ex = [str(window_texts[i]) for i in idx[np.argsort(d)[:n_examples]]]
        else:
            ex = []
        out.append(ClusterShift(c, rs, ws, ws - rs, rs < new_share and ws >= 0.05, terms[c], ex))
    return sorted(out, key=lambda s: -s.growth)


def weighted_estimate(values, weights, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float, float]:
    """Self-normalised weighted mean, its effective sample size ``(sum w)^2 / sum w^2`` and a bootstrap interval.

    Returns ``(estimate, lower, upper, ess)``. Rows (value, weight) are resampled together.
    """
    v = np.asarray(values, dtype=np.float64)
    wt = np.asarray(weights, dtype=np.float64)
    if v.shape != wt.shape or v.ndim != 1 or v.size == 0:
        raise ValueError(f"values and weights must be equal-length non-empty 1-D arrays, got {v.shape} and {wt.shape}")
    if (wt < 0).any() or not np.isfinite(wt).all() or wt.sum() <= 0:
        raise ValueError("weights must be finite, >= 0 and not all zero")
    ess = float(wt.sum() ** 2 / (wt**2).sum())
    iv = bootstrap_interval(np.column_stack([v, wt]), lambda a: float((a[:, 0] * a[:, 1]).sum() / max(a[:, 1].sum(), 1e-300)),
                            confidence=confidence, n_boot=n_boot, seed=seed)
    return iv.estimate, iv.lower, iv.upper, ess


class EvalEstimate(NamedTuple):
    """Today's metric from the old eval set, or a refusal.

    is_refused: True when traffic falls outside the eval set's support; estimate/lower/upper are nan
    estimate, lower, upper: the reweighted metric and its bootstrap interval
    ess: effective sample size of the weights (out of ``n_eval``)
    uncovered_share: share of traffic whose eval density is below 1/``clip`` of its traffic density
    message: one line for a report ("the eval set does not cover 23% of traffic" on refusal)
    meta: clip, limits, sizes, the stale unweighted metric
    """

    is_refused: bool
    estimate: float
    lower: float
    upper: float
    ess: float
    n_eval: int
    n_traffic: int
    uncovered_share: float
    message: str
    meta: dict[str, Any]


def importance_weighted_estimate(eval_emb, eval_metric, traffic_emb, clip: float = 20.0, max_uncovered: float = 0.05,
                                 C: float = 0.1, n_folds: int = 5, confidence: float = 0.95, n_boot: int = 1000,
                                 model: str = "logistic", k: int = 20, coverage_quantile: float = 0.99,
                                 seed: int = 0) -> EvalEstimate:
    """Reweight the labelled eval set to today's traffic; refuse where traffic is outside its support.

    Args:
        eval_emb: ``(n, d)`` eval query embeddings; eval_metric: ``(n,)`` their per-query metric.
        traffic_emb: ``(m, d)`` embeddings of a window of (unlabelled) traffic queries.
        clip: largest density ratio used (weights above it are clipped).
        max_uncovered: refuse when more than this share of traffic is uncovered (:func:`uncovered_mask`
            at ``coverage_quantile``; ~1% of same-distribution traffic is flagged by chance at 0.99).
        model, k, C: the density-ratio model (:func:`domain_probabilities`), fitted on eval vs covered traffic.
    """
    e = _emb(eval_emb, "eval_emb")
    t = _emb(traffic_emb, "traffic_emb")
    _same_dim(e, t)
    y = np.asarray(eval_metric, dtype=np.float64)
    if y.shape != (len(e),) or not np.isfinite(y).all():
        raise ValueError(f"eval_metric must be {len(e)} finite values (one per eval row), got shape {y.shape}")
    if clip <= 1 or not (0.0 <= max_uncovered < 1.0):
        raise ValueError(f"need clip > 1 and 0 <= max_uncovered < 1, got clip={clip}, max_uncovered={max_uncovered}")
    mask, radius = uncovered_mask(e, t, coverage_quantile)
    unc = float(mask.mean())
    meta = {"clip": clip, "max_uncovered": max_uncovered, "stale": float(y.mean()), "C": C, "model": model, "k": k,
            "confidence": confidence, "coverage_quantile": coverage_quantile, "coverage_radius": radius}
    if unc > max_uncovered or (~mask).sum() < 2:
        msg = (f"the eval set does not cover {100 * unc:.0f}% of traffic (limit {100 * max_uncovered:.0f}%): "
               "no reweighted estimate; label traffic from the uncovered clusters")
        return EvalEstimate(True, math.nan, math.nan, math.nan, math.nan, len(e), len(t), unc, msg, meta)
    cov = t[~mask]
    pe, _ = domain_probabilities(e, cov, C=C, n_folds=n_folds, seed=seed, model=model, k=k)
    we = np.minimum(density_ratio(pe, len(e), len(cov)), clip)
    est, lo, hi, ess = weighted_estimate(y, we, confidence, n_boot, seed)
    msg = f"reweighted metric {est:.3f} [{lo:.3f}, {hi:.3f}] (ESS {ess:.0f} of {len(e)}; stale {y.mean():.3f})"
    return EvalEstimate(False, est, lo, hi, ess, len(e), len(t), unc, msg, meta)


class RefreshPlan(NamedTuple):
    """Traffic rows to label, in order; their cluster and whether they lie outside the eval set's support."""

    indices: np.ndarray
    cluster: np.ndarray
    uncovered: np.ndarray
    uncovered_share: float
    meta: dict[str, Any]


def _allocate(counts: np.ndarray, budget: int) -> np.ndarray:
    """Largest-remainder allocation of ``budget`` proportional to ``counts``, never above a count."""
    alloc = np.zeros_like(counts)
    while budget > 0 and (counts - alloc).sum() > 0:
        room = counts - alloc
        quota = budget * room / room.sum()
        add = np.minimum(np.floor(quota).astype(int), room)
        if add.sum() == 0:
            add[np.argmax(np.where(room > 0, quota, -1))] = 1
        alloc += add
        budget -= int(add.sum())
    return alloc


def pick_for_labelling(eval_emb, traffic_emb, budget: int, n_clusters: int = 8, coverage_quantile: float = 0.99,
                       seed: int = 0, strategy: str = "uncovered_first") -> RefreshPlan:
    """Choose ``budget`` traffic rows to label, stratified by traffic cluster (KMeans on the window).

    ``strategy="uncovered_first"``: every uncovered row before any covered one (each group stratified by
    cluster) -- for a small budget and an estimate from the eval set alone (:func:`refreshed_estimate`),
    where the eval set cannot speak for the uncovered rows. ``strategy="proportional"``: strata = cluster x
    covered/uncovered, each stratum sampled in proportion to its size (stratified random sampling); for
    :func:`model_assisted_refresh`, which needs residuals from covered traffic too (the reweighted eval set
    carries its own sampling luck there). ``ragfix bench eval-drift`` measures both.
    """
    from sklearn.cluster import KMeans

    e, t = _emb(eval_emb, "eval_emb"), _emb(traffic_emb, "traffic_emb")
    _same_dim(e, t)
    if budget < 1:
        raise ValueError(f"budget must be >= 1 query to label, got {budget}")
    if strategy not in ("uncovered_first", "proportional"):
        raise ValueError(f"strategy must be 'uncovered_first' or 'proportional', got {strategy!r}")
    budget = min(budget, len(t))
    unc, _ = uncovered_mask(e, t, coverage_quantile)
    k = int(max(1, min(n_clusters, len(t) // 2)))
    lab = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(t)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    if strategy == "proportional":
        strata = lab * 2 + unc.astype(int)
        counts = np.bincount(strata, minlength=2 * k)
        for h, n in enumerate(_allocate(counts, budget)):
            chosen.extend(rng.permutation(np.flatnonzero(strata == h))[:n].tolist())
    else:
        for group in (unc, ~unc):
            left = budget - len(chosen)
            if left <= 0:
                break
            counts = np.array([np.sum(group & (lab == c)) for c in range(k)])
            for c, n in enumerate(_allocate(counts, min(left, int(counts.sum())))):
                chosen.extend(rng.permutation(np.flatnonzero(group & (lab == c)))[:n].tolist())
    idx = np.array(chosen, dtype=int)
    return RefreshPlan(idx, lab[idx], unc[idx], float(unc.mean()), {"n_clusters": k, "labels": lab,
                                                                    "uncovered_mask": unc, "strategy": strategy})


def refreshed_estimate(eval_emb, eval_metric, traffic_emb, plan: RefreshPlan, new_metric, confidence: float = 0.95,
                       n_boot: int = 1000, clip: float = 20.0, C: float = 0.1, model: str = "logistic", k: int = 20,
                       seed: int = 0) -> tuple[float, float, float]:
    """Today's metric from the old eval set plus newly labelled traffic rows (``plan``, ``new_metric`` in plan order).

    Post-stratified over covered / uncovered traffic (shares from the whole window):

    * uncovered part: the new labels there, post-stratified by the plan's clusters (a cluster with no
      label takes the mean of the uncovered labels) -- the eval set cannot speak for it;
    * covered part: the importance-weighted eval estimate against the covered traffic and the mean
      of the new covered labels, each weighted by its precision (1 / bootstrap variance).

    Returns ``(estimate, lower, upper)``; the interval resamples eval rows and new rows.
    """
    e, t = _emb(eval_emb, "eval_emb"), _emb(traffic_emb, "traffic_emb")
    y = np.asarray(eval_metric, dtype=np.float64)
    yn = np.asarray(new_metric, dtype=np.float64)
    if yn.shape != plan.indices.shape:
        raise ValueError(f"new_metric has {yn.size} values for {plan.indices.size} planned rows")
    lab, unc = plan.meta["labels"], plan.meta["uncovered_mask"]
    u = float(unc.mean())
    new_unc = unc[plan.indices]
    new_lab = lab[plan.indices]
    unc_cl, unc_n = np.unique(lab[unc], return_counts=True)
    cov = ~unc
    if cov.sum() >= 2:
        pe, _ = domain_probabilities(e, t[cov], C=C, seed=seed, model=model, k=k)
        we = np.minimum(density_ratio(pe, len(e), int(cov.sum())), clip)
    else:
        we = np.ones(len(e))

    def parts(yb: np.ndarray, wb: np.ndarray, ynb: np.ndarray, ub: np.ndarray, lb: np.ndarray) -> tuple[float, float, float]:
        iw = float((yb * wb).sum() / wb.sum())
        yc = ynb[~ub]
        mc = float(yc.mean()) if yc.size else math.nan
        if ub.any():
            overall = ynb[ub].mean()
            mu = float(sum(n * (ynb[ub & (lb == c)].mean() if (ub & (lb == c)).any() else overall)
                           for c, n in zip(unc_cl, unc_n)) / unc_n.sum())
        else:
            mu = math.nan
        return iw, mc, mu

    est_parts = parts(y, we, yn, new_unc, new_lab)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        j = rng.integers(0, len(yn), len(yn)) if len(yn) else np.array([], dtype=int)
        boots.append(parts(y[i], we[i], yn[j], new_unc[j], new_lab[j]))
    boots_a = np.array(boots, dtype=np.float64)
    finite = np.isfinite(boots_a)
    var = np.array([boots_a[finite[:, c], c].var() if finite[:, c].sum() > 1 else np.inf for c in range(3)]) + 1e-12

    def combine(p: tuple[float, float, float]) -> float:
        iw, mc, mu = p
        covered = iw if math.isnan(mc) else (iw / var[0] + mc / var[1]) / (1 / var[0] + 1 / var[1])
        if math.isnan(mu):
            return covered  # no uncovered labels: the best the old eval set can say (the refusal told the user)
        return (1 - u) * covered + u * mu

    est = combine(est_parts)
    dist = np.array([combine(tuple(b)) for b in boots_a])
    dist = dist[np.isfinite(dist)]
    a = (1 - confidence) / 2
    if dist.size == 0:
        return float(est), math.nan, math.nan
    return float(est), float(np.quantile(dist, a)), float(np.quantile(dist, 1 - a))


# ---------------------------------------------------------------------------------------------
# Model-assisted (doubly robust) estimates: a label-free predictor of the per-query metric on traffic,
# its bias corrected with labelled rows


def _neighbour_mean(ref_emb: np.ndarray, ref_y: np.ndarray, x: np.ndarray | None, k: int) -> np.ndarray:
    """Mean ``ref_y`` of each row's ``k`` nearest ``ref_emb`` rows (cosine); ``x=None``: leave-one-out on ``ref_emb``."""
    from sklearn.neighbors import NearestNeighbors

    loo = x is None
    k = int(min(k, len(ref_emb) - loo))
    nn = NearestNeighbors(n_neighbors=k + loo, metric="cosine").fit(ref_emb)
    idx = nn.kneighbors(ref_emb if loo else x, return_distance=False)
    if loo:
        # subtle: drop the row itself wherever it sits among its neighbours (a duplicate query may tie at distance 0)
        own = np.arange(len(ref_emb))[:, None]
        keep = idx != own
        idx = np.array([row[m][:k] for row, m in zip(idx, keep)])
    return ref_y[idx].mean(axis=1)


def cross_fitted_predictions(eval_features, eval_metric, other_features, n_folds: int = 5, seed: int = 0,
                             eval_emb=None, other_emb=None, neighbour_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A ridge regression (standardised features, penalty by internal CV) from label-free per-query
    signals to the metric, fitted on the labelled eval rows.

    Returns ``(eval_pred, other_pred)``: each eval row's prediction comes from a model fitted on the
    other folds (so its residual is honest, not fitted), ``other_pred`` from the model on all eval rows.
    The signals must exist for unlabelled traffic too (e.g. retrieval-score and query-result agreement
    features, or a cross-encoder's judgement of the top results); a weak predictor costs variance, not
    bias -- the residual correction in :func:`model_assisted_estimate` removes its mean error.

    ``neighbour_k`` (with ``eval_emb`` and ``other_emb``, query embeddings) adds one more feature: the mean
    metric of the row's ``neighbour_k`` nearest labelled eval queries -- how hard this part of query space
    was on the eval set. It is built inside the cross-fitting: a held-out fold's rows see only the
    training folds' labels, and a training row its training neighbours but not itself, so no eval row's
    own label reaches its prediction (a neighbour mean over all eval rows would leak the held-out labels
    into the training rows' feature and shrink the residuals the estimate corrects with).
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xe = _emb(eval_features, "eval_features")
    xo = np.asarray(other_features, dtype=np.float64)
    if xo.ndim == 1:
        xo = xo[:, None]
    if xo.ndim != 2 or xo.shape[1] != xe.shape[1] or not np.isfinite(xo).all():
        raise ValueError(f"other_features must be finite (n, {xe.shape[1]}) like eval_features, got shape {xo.shape}")
    y = np.asarray(eval_metric, dtype=np.float64)
    if y.shape != (len(xe),) or not np.isfinite(y).all():
        raise ValueError(f"eval_metric must be {len(xe)} finite values (one per eval row), got shape {y.shape}")
    folds = int(min(n_folds, len(xe)))
    if folds < 2:
        raise ValueError("cross_fitted_predictions needs at least 2 eval rows")
    if neighbour_k is not None:
        if neighbour_k < 1 or eval_emb is None or other_emb is None:
            raise ValueError(f"neighbour_k={neighbour_k} needs neighbour_k >= 1 and both eval_emb and other_emb "
                             "(query embeddings of the eval rows and of the other rows)")
        ee, eo = _emb(eval_emb, "eval_emb"), np.asarray(other_emb, dtype=np.float64)
        if ee.shape[0] != len(xe) or eo.ndim != 2 or eo.shape != (len(xo), ee.shape[1]) or not np.isfinite(eo).all():
            raise ValueError(f"eval_emb must have one row per eval row ({len(xe)}) and other_emb one finite row per other "
                             f"row ({len(xo)}) of the same width; got {ee.shape} and {eo.shape}")

    def model():
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 3, 12)))

    def with_neighbours(tr: np.ndarray, x_tr: np.ndarray, x_new: np.ndarray, emb_new: np.ndarray | None):
        if neighbour_k is None:
            return x_tr, x_new
        f_tr = _neighbour_mean(ee[tr], y[tr], None, neighbour_k)
        f_new = _neighbour_mean(ee[tr], y[tr], emb_new, neighbour_k) if len(x_new) else np.empty(0)
        return np.column_stack([x_tr, f_tr]), np.column_stack([x_new, f_new]) if len(x_new) else x_new

    pe = np.empty(len(xe))
    for tr, te in KFold(folds, shuffle=True, random_state=seed).split(xe):
        a, b = with_neighbours(tr, xe[tr], xe[te], ee[te] if neighbour_k is not None else None)
        pe[te] = model().fit(a, y[tr]).predict(b)
    if not len(xo):
        return pe, np.empty(0)
    a, b = with_neighbours(np.arange(len(xe)), xe, xo, eo if neighbour_k is not None else None)
    return pe, model().fit(a, y).predict(b)


def _check_pred(pred, n: int, name: str) -> np.ndarray:
    a = np.asarray(pred, dtype=np.float64)
    if a.shape != (n,) or not np.isfinite(a).all():
        raise ValueError(f"{name} must be {n} finite predictions (one per row), got shape {a.shape}")
    return a


def _covered_weights(e: np.ndarray, t: np.ndarray, clip: float, max_uncovered: float, coverage_quantile: float,
                     model: str, k: int, C: float, n_folds: int, seed: int) -> tuple[np.ndarray, float, np.ndarray | None]:
    """``(uncovered mask, radius, eval weights against the covered traffic or None on refusal)``."""
    if clip <= 1 or not (0.0 <= max_uncovered <= 1.0):
        raise ValueError(f"need clip > 1 and 0 <= max_uncovered <= 1, got clip={clip}, max_uncovered={max_uncovered}")
    mask, radius = uncovered_mask(e, t, coverage_quantile)
    if mask.mean() > max_uncovered or (~mask).sum() < 2:
        return mask, radius, None
    pe, _ = domain_probabilities(e, t[~mask], C=C, n_folds=n_folds, seed=seed, model=model, k=k)
    return mask, radius, np.minimum(density_ratio(pe, len(e), int((~mask).sum())), clip)


def _assisted_inputs(eval_emb, eval_metric, eval_pred, traffic_emb, traffic_pred):
    """Checked arrays for the model-assisted estimators: embeddings, eval metric, out-of-fold and traffic predictions."""
    e, t = _emb(eval_emb, "eval_emb"), _emb(traffic_emb, "traffic_emb")
    _same_dim(e, t)
    y = np.asarray(eval_metric, dtype=np.float64)
    if y.shape != (len(e),) or not np.isfinite(y).all():
        raise ValueError(f"eval_metric must be {len(e)} finite values (one per eval row), got shape {y.shape}")
    pe = _check_pred(eval_pred, len(e), "eval_pred")
    pt = _check_pred(traffic_pred, len(t), "traffic_pred")
    return e, t, y, pe, pt


def model_assisted_estimate(eval_emb, eval_metric, eval_pred, traffic_emb, traffic_pred, clip: float = 20.0,
                            max_uncovered: float = 0.05, confidence: float = 0.95, n_boot: int = 1000,
                            model: str = "knn", k: int = 20, C: float = 0.1, n_folds: int = 5,
                            coverage_quantile: float = 0.99, seed: int = 0) -> EvalEstimate:
    """Doubly robust estimate of today's metric: the mean predicted metric over (covered) traffic plus the
    density-ratio-weighted mean residual ``metric - prediction`` of the labelled eval rows.

    ``eval_pred`` must be out-of-fold (:func:`cross_fitted_predictions`). Right if either the weights or
    the predictor is right; when the predictor sees why traffic queries are harder (it is evaluated ON
    them), the eval set's own sampling luck in a growing topic only enters through the residuals, which
    is where plain reweighting (:func:`importance_weighted_estimate`) fails. Same refusal as plain
    reweighting: more than ``max_uncovered`` of traffic outside the eval set's support -> no number (the
    residual correction could not be checked there). ESS is that of the weights; the bootstrap resamples
    eval rows and traffic rows.
    """
    e, t, y, pe, pt = _assisted_inputs(eval_emb, eval_metric, eval_pred, traffic_emb, traffic_pred)
    mask, radius, we = _covered_weights(e, t, clip, max_uncovered, coverage_quantile, model, k, C, n_folds, seed)
    unc = float(mask.mean())
    meta = {"clip": clip, "max_uncovered": max_uncovered, "stale": float(y.mean()), "model": model, "k": k,
            "confidence": confidence, "coverage_quantile": coverage_quantile, "coverage_radius": radius,
            "estimator": "model_assisted"}
    if we is None:
        msg = (f"the eval set does not cover {100 * unc:.0f}% of traffic (limit {100 * max_uncovered:.0f}%): "
               "no reweighted estimate; label traffic from the uncovered clusters")
        return EvalEstimate(True, math.nan, math.nan, math.nan, math.nan, len(e), len(t), unc, msg, meta)
    ptc = pt[~mask]
    res = y - pe

    def stat(r: np.ndarray, w: np.ndarray, p: np.ndarray) -> float:
        return float(p.mean() + (r * w).sum() / max(w.sum(), 1e-300))

    est = stat(res, we, ptc)
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        i, j = rng.integers(0, len(y), len(y)), rng.integers(0, len(ptc), len(ptc))
        boots[b] = stat(res[i], we[i], ptc[j])
    a = (1 - confidence) / 2
    lo, hi = float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))
    ess = float(we.sum() ** 2 / (we**2).sum())
    meta.update({"predicted_traffic_mean": float(ptc.mean()), "weighted_eval_residual": est - float(ptc.mean())})
    msg = (f"model-assisted metric {est:.3f} [{lo:.3f}, {hi:.3f}] (predicted {ptc.mean():.3f} + weighted eval residual "
           f"{est - ptc.mean():+.3f}; ESS {ess:.0f} of {len(e)}; stale {y.mean():.3f})")
    return EvalEstimate(False, est, lo, hi, ess, len(e), len(t), unc, msg, meta)


def signals_estimate(eval_emb, eval_metric, eval_signals, traffic_emb, traffic_signals, seed: int = 0,
                     clip: float = 20.0, max_uncovered: float = 0.05, n_boot: int = 1000,
                     confidence: float = 0.95) -> tuple[EvalEstimate, np.ndarray, np.ndarray]:
    """Today's metric from label-free per-query signals, with the settings ``ragfix bench eval-drift`` measures.

    :func:`cross_fitted_predictions` (ridge on ``*_signals`` plus the cross-fitted metric of the nearest
    eval queries, :data:`PREDICTOR_SETTINGS`) then :func:`model_assisted_estimate` (kNN density ratio,
    :data:`WEIGHT_SETTINGS`). The bench's story and ``ragfix diagnose eval-drift`` both call this, so
    the number a user gets on their logs is computed as the measured one. Returns ``(estimate,
    eval_pred, traffic_pred)``; the predictions feed :func:`model_assisted_refresh`.
    """
    pe, pt = cross_fitted_predictions(eval_signals, eval_metric, traffic_signals, seed=seed, eval_emb=eval_emb,
                                      other_emb=traffic_emb, **PREDICTOR_SETTINGS)
    est = model_assisted_estimate(eval_emb, eval_metric, pe, traffic_emb, pt, clip=clip, max_uncovered=max_uncovered,
                                  confidence=confidence, n_boot=n_boot, seed=seed, **WEIGHT_SETTINGS)
    return est, pe, pt


def model_assisted_refresh(eval_emb, eval_metric, eval_pred, traffic_emb, traffic_pred, plan: RefreshPlan, new_metric,
                           confidence: float = 0.95, n_boot: int = 500, clip: float = 20.0, model: str = "knn",
                           k: int = 20, coverage_quantile: float = 0.99, seed: int = 0) -> tuple[float, float, float]:
    """Today's metric on the whole window from old eval labels, new traffic labels and a label-free predictor.

    A composite (model-assisted, post-stratified) estimator of the window mean: labelled rows count with
    their label; every unlabelled row counts with its prediction plus the mean residual of its stratum --
    for an uncovered cluster the residual of the new labels in it (all uncovered new labels if it has
    none), for covered traffic the precision-weighted (1 / variance) mix of the new covered residuals and
    the density-ratio-weighted eval residuals. ``eval_pred`` out-of-fold; ``traffic_pred`` for every
    window row. The interval resamples eval rows and new rows (within covered / uncovered).
    Returns ``(estimate, lower, upper)``.
    """
    e, t, y, pe, pt = _assisted_inputs(eval_emb, eval_metric, eval_pred, traffic_emb, traffic_pred)
    yn = np.asarray(new_metric, dtype=np.float64)
    if yn.shape != plan.indices.shape or not np.isfinite(yn).all():
        raise ValueError(f"new_metric has {yn.size} values for {plan.indices.size} planned rows (all must be finite)")
    lab, unc = plan.meta["labels"], plan.meta["uncovered_mask"]
    if len(lab) != len(t):
        raise ValueError(f"plan was made for a window of {len(lab)} rows, traffic_emb has {len(t)}")
    _, _, we = _covered_weights(e, t, clip, 1.0, coverage_quantile, model, k, 0.1, 5, seed)
    if we is None:
        we = np.ones(len(e))
    L = plan.indices
    is_l = np.zeros(len(t), bool)
    is_l[L] = True
    unl_cov = ~is_l & ~unc
    unl_unc = [(int(((~is_l) & unc & (lab == c)).sum()), c) for c in np.unique(lab[unc])]
    n = len(t)

    def stat(r_e: np.ndarray, w_e: np.ndarray, yl: np.ndarray, rl: np.ndarray, ul: np.ndarray, cl: np.ndarray) -> float:
        iw = float((r_e * w_e).sum() / w_e.sum())
        ess = float(w_e.sum() ** 2 / (w_e**2).sum())
        v_iw = float(np.average((r_e - iw) ** 2, weights=w_e)) / ess + 1e-12
        rc_l = rl[~ul]
        if rc_l.size > 1:
            v_l = float(rc_l.var(ddof=1)) / rc_l.size + 1e-12
            r_cov = (iw / v_iw + rc_l.mean() / v_l) / (1 / v_iw + 1 / v_l)
        else:
            r_cov = iw
        total = float(yl.sum()) + float(pt[unl_cov].sum()) + r_cov * int(unl_cov.sum())
        r_unc_all = float(rl[ul].mean()) if ul.any() else r_cov
        for n_c, c in unl_unc:
            sel = ul & (cl == c)
            total += n_c * (float(rl[sel].mean()) if sel.any() else r_unc_all)
        return total / n

    total_pred_unc = float(pt[~is_l & unc].sum()) / n
    rl = yn - pt[L]
    ul, cl = unc[L], lab[L]
    est = stat(y - pe, we, yn, rl, ul, cl) + total_pred_unc
    rng = np.random.default_rng(seed)
    boots = np.empty(n_boot)
    gu, gc = np.flatnonzero(ul), np.flatnonzero(~ul)
    for b in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        j = np.r_[gu[rng.integers(0, len(gu), len(gu))] if len(gu) else np.array([], int),
                  gc[rng.integers(0, len(gc), len(gc))] if len(gc) else np.array([], int)].astype(int)
        boots[b] = stat((y - pe)[i], we[i], yn[j], rl[j], ul[j], cl[j]) + total_pred_unc
    a = (1 - confidence) / 2
    return float(est), float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))
