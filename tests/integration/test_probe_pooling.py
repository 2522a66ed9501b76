"""The probe behind the 2-layer stage's next step: after two MiniLM layers [CLS] is near-constant, the token mean is not."""


def test_two_layer_cls_barely_varies_while_the_token_mean_does(data_root):
    from bench.probes.probe_pooling import probe_pooling

    r = probe_pooling(n_pairs=120, layers=(2,))
    assert r["pairs"] == 120 and 0 < r["positives"] < 120
    cls, mean = r["layers2_cls"], r["layers2_mean"]
    assert mean["spread"] > 10 * cls["spread"]  # measured on 800 pairs: 0.094 vs 0.002
    assert len(cls["probe_auc_folds"]) == 5
