"""A small intent classifier over sentence embeddings: the cheap stage that replaces an LLM call.

Failure modes served: Single-LLM Overspend (V) -- intent routing does not need an LLM -- and, as
the cheap stage of :class:`cascade.cascade.Cascade`, Cascade Saturation (X); its max-probability
(or max-logit) score is also the out-of-scope score thresholded in ``ragfix bench thresholds``.
Mechanism: multinomial logistic regression (scikit-learn) on L2-normalised embeddings, with
``predict_proba`` (softmax) and ``decision_function`` (raw logits) exposed separately so the
two score scales can be compared honestly. Takes embeddings, not texts: the embedder is the
caller's choice and its fingerprint goes into :attr:`fingerprint`.

:class:`IntentModel` wraps the classifier for deployment: texts in (it holds the embedder's
registry name and fingerprint), an optional out-of-scope threshold on the max probability, and
``save``/``load``. The saved form cannot run code: ``model.json`` (format version, classes, settings,
the classifier fingerprint) beside ``coef.npy`` and ``intercept.npy`` read with ``allow_pickle=False``;
``load`` checks the version and recomputes the fingerprint from the arrays. A folder holding only a
pickle (``model.joblib``, format 1) is refused, never unpickled: unpickling a crafted file runs its code.
``ragfix train intent`` builds a model from CLINC150 or a user's CSV/JSONL (:func:`load_text_labels`).

Leaves out: fine-tuning the encoder, an explicit out-of-scope class.
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["EmbeddingIntentClassifier", "IntentModel", "IntentModelFormatError", "load_text_labels",
           "fit_intent_model", "evaluate_intent", "INTENT_FORMAT"]

INTENT_FORMAT = 2  # 1 was a joblib pickle (refused); 2 is model.json + coef.npy + intercept.npy


class IntentModelFormatError(ValueError):
    """An intent model folder is not in the safe format this code reads (or is damaged)."""


class EmbeddingIntentClassifier:
    """``fit(X (n, d), intents) -> self``; ``predict_proba``, ``decision_function``, ``predict``.

    Args:
        C: inverse L2 regularisation of the logistic regression.
        max_iter: lbfgs iterations.
        embedder_fingerprint: fingerprint of the embedder that produced ``X``; folded into
            :attr:`fingerprint` so a threshold spec can tell two classifiers apart.

    Learned: ``classes_`` (sorted intent names), ``model_`` (the sklearn estimator), ``fingerprint_``.
    """

    def __init__(self, C: float = 10.0, max_iter: int = 300, embedder_fingerprint: str = "") -> None:
        if C <= 0:
            raise ValueError(f"C must be > 0, got {C}")
        self.C, self.max_iter, self.embedder_fingerprint = C, max_iter, embedder_fingerprint

    @staticmethod
    def _check_x(X) -> np.ndarray:
        x = np.asarray(X, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"X must be a non-empty (n, dim) embedding matrix, got shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("X has NaN or infinite values")
        return x

    def fit(self, X, intents: Sequence[str]) -> "EmbeddingIntentClassifier":
        from sklearn.linear_model import LogisticRegression

        x = self._check_x(X)
        y = np.asarray(intents)
        if y.shape != (x.shape[0],):
            raise ValueError(f"intents must have one label per row of X ({x.shape[0]}), got {y.shape}")
        if len(set(y.tolist())) < 2:
            raise ValueError("intents hold a single class; a classifier needs at least two")
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(x, y)
        self.classes_ = np.asarray(self.model_.classes_)
        self.fingerprint_ = self._fingerprint(self.embedder_fingerprint, self.model_.coef_, self.model_.intercept_)
        return self

    @staticmethod
    def _fingerprint(embedder_fingerprint: str, coef: np.ndarray, intercept: np.ndarray) -> str:
        h = hashlib.sha256(embedder_fingerprint.encode())
        h.update(np.asarray(coef).astype(np.float32).tobytes())
        h.update(np.asarray(intercept).astype(np.float32).tobytes())
        return h.hexdigest()[:16]

    @classmethod
    def from_arrays(cls, coef: np.ndarray, intercept: np.ndarray, classes: Sequence[str], C: float = 10.0,
                    embedder_fingerprint: str = "") -> "EmbeddingIntentClassifier":
        """A fitted classifier from its learned arrays (what ``IntentModel.save`` stores), no refit.

        ``coef`` is ``(n_classes, dim)`` (``(1, dim)`` for two classes), ``intercept`` ``(n_classes,)``
        (``(1,)``); shapes that do not fit ``classes`` raise.
        """
        from sklearn.linear_model import LogisticRegression

        coef, intercept = np.asarray(coef), np.asarray(intercept)  # dtype kept: the fit's own (float32 here)
        if coef.dtype.kind != "f" or intercept.dtype.kind != "f":
            raise ValueError(f"from_arrays: coef and intercept must be float arrays, got {coef.dtype} and {intercept.dtype}")
        classes = np.asarray(list(classes))
        rows = 1 if len(classes) == 2 else len(classes)
        if len(classes) < 2 or coef.ndim != 2 or coef.shape[0] != rows or intercept.shape != (rows,):
            raise ValueError(f"from_arrays: coef {coef.shape} and intercept {intercept.shape} do not fit "
                             f"{len(classes)} classes (expected ({rows}, dim) and ({rows},))")
        if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))):
            raise ValueError("from_arrays: coef or intercept has NaN or infinite values")
        self = cls(C=C, embedder_fingerprint=embedder_fingerprint)
        lr = LogisticRegression(C=C)
        lr.coef_, lr.intercept_, lr.classes_ = coef, intercept, classes
        lr.n_features_in_ = coef.shape[1]
        lr.n_iter_ = np.zeros(1, dtype=np.int32)
        self.model_, self.classes_ = lr, classes
        self.fingerprint_ = cls._fingerprint(embedder_fingerprint, coef, intercept)
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("EmbeddingIntentClassifier is not fitted; call fit(X, intents) first")

    def decision_function(self, X) -> np.ndarray:
        """Raw per-class logits, ``(n, n_classes)``."""
        self._fitted()
        return self.model_.decision_function(self._check_x(X))

    def predict_proba(self, X) -> np.ndarray:
        """Softmax probabilities, ``(n, n_classes)``, columns in ``classes_`` order."""
        self._fitted()
        return self.model_.predict_proba(self._check_x(X))

    def predict(self, X) -> np.ndarray:
        self._fitted()
        return self.classes_[self.decision_function(X).argmax(axis=1)]


# ----------------------------------------------------------------------------- texts in, deployable

def _utf8_lines(path: Path):
    """``(line_number, text)`` per line of a UTF-8 file (BOM dropped); bad bytes raise naming the line."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                yield n, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}:{n}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                                 "re-save the file as UTF-8") from None


def load_text_labels(path: Path | str, text_column: str = "text",
                     label_column: str = "label") -> tuple[list[str], list[str]]:
    """``(texts, labels)`` from a CSV/TSV with a header, or JSONL objects, naming the two columns.

    Public intent sets ship ``text,category`` or ``text,intent``: pass ``label_column="intent"``. UTF-8
    with an optional BOM. Every problem (non-UTF-8 bytes, bad JSON, a CSV field over the csv module's
    128 KB limit, a missing or empty column) raises ``ValueError`` naming the file and the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: intent data file not found")
    rows: list[tuple[int, object, object]] = []
    cols = f"{text_column!r} and {label_column!r}"
    if path.suffix.lower() in (".jsonl", ".json"):
        for n, line in _utf8_lines(path):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict) or text_column not in obj or label_column not in obj:
                raise ValueError(f"{path}:{n}: expected an object with {cols}, got {line.strip()[:80]!r} "
                                 "(name other fields with --text-column/--label-column)")
            rows.append((n, obj[text_column], obj[label_column]))
    elif path.suffix.lower() in (".csv", ".tsv"):
        last = [0]

        def lines():
            for n, line in _utf8_lines(path):
                last[0] = n
                yield line

        reader = csv.DictReader(lines(), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        try:
            if not reader.fieldnames or not {text_column, label_column} <= set(reader.fieldnames):
                raise ValueError(f"{path}:1: needs a header with {cols} columns, got {reader.fieldnames} "
                                 "(name yours with --text-column/--label-column)")
            for row in reader:
                rows.append((last[0], row[text_column], row[label_column]))
        except csv.Error as exc:
            raise ValueError(f"{path}:{last[0]}: malformed CSV ({exc}); fix or drop this row") from None
    else:
        raise ValueError(f"{path}: unknown extension {path.suffix!r}; use .csv, .tsv or .jsonl")
    for n, t, lab in rows:
        if not isinstance(t, str) or not t.strip():
            raise ValueError(f"{path}:{n}: empty or non-text {text_column!r} ({t!r})")
        if not isinstance(lab, str) or not lab.strip():
            raise ValueError(f"{path}:{n}: empty or non-text {label_column!r} ({lab!r})")
    if not rows:
        raise ValueError(f"{path}: no rows")
    return [t for _, t, _ in rows], [lab for _, _, lab in rows]


class IntentModel:
    """Texts -> intents, with out-of-scope: ``predict(texts)`` gives ``oos_label`` when max P < ``oos_threshold``.

    Holds the :class:`EmbeddingIntentClassifier`, the embedder's registry name and fingerprint. The
    embedder is passed in (``embedder=``, or ``registry.load_intent_model(folder)``, which loads it by
    name); one whose fingerprint differs from the training embedder's is refused with a ValueError,
    and predicting with none attached raises a RuntimeError that says how to attach one.
    """

    def __init__(self, classifier: EmbeddingIntentClassifier, embedder_name: str, embedder_fingerprint: str,
                 oos_threshold: float = 0.0, oos_label: str = "oos", embedder=None) -> None:
        if not 0.0 <= oos_threshold < 1.0:
            raise ValueError(f"oos_threshold must be in [0, 1), got {oos_threshold}")
        self.classifier, self.embedder_name, self.embedder_fingerprint = classifier, embedder_name, embedder_fingerprint
        self.oos_threshold, self.oos_label, self._embedder = oos_threshold, oos_label, None
        if embedder is not None:
            self.embedder = embedder

    @property
    def embedder(self):
        if self._embedder is None:
            raise RuntimeError(f"IntentModel: no embedder attached; pass embedder= (the {self.embedder_name!r} embedder, "
                               f"fingerprint {self.embedder_fingerprint}) to IntentModel.load, or load the model with "
                               "registry.load_intent_model(folder)")
        return self._embedder

    @embedder.setter
    def embedder(self, embedder) -> None:
        fp = getattr(embedder, "fingerprint", None)
        if fp != self.embedder_fingerprint:
            raise ValueError(f"IntentModel: embedder {getattr(embedder, 'name', type(embedder).__name__)!r} has fingerprint "
                             f"{fp}, the classifier was trained on {self.embedder_name!r} ({self.embedder_fingerprint}); "
                             "pass that embedder or retrain with `ragfix train intent`")
        self._embedder = embedder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise ValueError(f"IntentModel: texts[{i}] must be a non-empty str, got {t!r}")
        return self.embedder.encode_queries(list(texts))

    def classify_embeddings(self, X) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(labels with oos applied, top in-scope intent, max probability) from one ``predict_proba`` pass."""
        p = self.classifier.predict_proba(X)
        top = self.classifier.classes_[p.argmax(1)]
        conf = p.max(1)
        labels = top.astype(object)  # a copy: ``top`` keeps the in-scope intent
        labels[conf < self.oos_threshold] = self.oos_label
        return labels, top, conf

    def predict_from_embeddings(self, X) -> tuple[np.ndarray, np.ndarray]:
        """(labels with oos applied, max probability) for an embedding matrix."""
        labels, _, conf = self.classify_embeddings(X)
        return labels, conf

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.predict_from_embeddings(self.embed(texts))[0]

    def save(self, folder: Path | str, meta: dict | None = None) -> Path:
        """``model.json`` + ``coef.npy`` + ``intercept.npy`` (no pickle) + ``meta.json`` + ``MODEL_CARD.md``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        clf = self.classifier
        np.save(folder / "coef.npy", np.asarray(clf.model_.coef_), allow_pickle=False)
        np.save(folder / "intercept.npy", np.asarray(clf.model_.intercept_), allow_pickle=False)
        state = {"format": INTENT_FORMAT, "classes": [str(c) for c in clf.classes_], "C": float(clf.C),
                 "embedder_name": self.embedder_name, "embedder_fingerprint": self.embedder_fingerprint,
                 "oos_threshold": float(self.oos_threshold), "oos_label": self.oos_label,
                 "classifier_fingerprint": clf.fingerprint_}
        (folder / "model.json").write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
        (folder / "model.joblib").unlink(missing_ok=True)  # an older pickle beside it would only confuse
        info = {"format": INTENT_FORMAT, "embedder": self.embedder_name, "embedder_fingerprint": self.embedder_fingerprint,
                "oos_threshold": float(self.oos_threshold), "n_intents": int(len(clf.classes_)),
                "classifier_fingerprint": clf.fingerprint_, **(meta or {})}
        (folder / "meta.json").write_text(json.dumps(info, indent=2) + "\n")
        (folder / "MODEL_CARD.md").write_text(_intent_card(info))
        return folder

    @classmethod
    def load(cls, folder: Path | str, embedder=None) -> "IntentModel":
        """Read a folder written by :meth:`save`. Never unpickles: a folder with only ``model.joblib``
        (format 1, or anyone's pickle) raises :class:`IntentModelFormatError` without opening it."""
        folder = Path(folder)
        path = folder / "model.json"
        if not path.is_file():
            pickles = [folder / "model.joblib"] + (sorted(folder.glob("*.pkl")) if folder.is_dir() else [])
            if any(p.exists() for p in pickles):
                raise IntentModelFormatError(
                    f"{folder}: holds a pickle (model.joblib/.pkl), which can run code when loaded; ragfix does not "
                    f"load pickles from model paths. Retrain with `ragfix train intent --out {folder} --force` "
                    "(writes model.json + .npy arrays)")
            raise FileNotFoundError(f"{path}: no intent model here; train one with `ragfix train intent --out {folder}`")
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IntentModelFormatError(f"{path}: not valid UTF-8 JSON ({exc}); retrain the model") from None
        if not isinstance(state, dict) or state.get("format") != INTENT_FORMAT:
            got = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise IntentModelFormatError(f"{path}: intent model format {got!r}, this code reads format {INTENT_FORMAT}; "
                                         "retrain it with `ragfix train intent`")
        need = {"classes": list, "embedder_name": str, "embedder_fingerprint": str, "oos_threshold": (int, float),
                "oos_label": str, "classifier_fingerprint": str}
        for key, typ in need.items():
            if not isinstance(state.get(key), typ):
                raise IntentModelFormatError(f"{path}: field {key!r} missing or not {getattr(typ, '__name__', typ)}")
        try:
            coef = np.load(folder / "coef.npy", allow_pickle=False)
            intercept = np.load(folder / "intercept.npy", allow_pickle=False)
            clf = EmbeddingIntentClassifier.from_arrays(coef, intercept, state["classes"], float(state.get("C", 10.0)),
                                                        state["embedder_fingerprint"])
        except (OSError, ValueError) as exc:
            raise IntentModelFormatError(f"{folder}: coef.npy/intercept.npy unreadable or inconsistent ({exc}); "
                                         "retrain the model") from None
        if clf.fingerprint_ != state["classifier_fingerprint"]:
            raise IntentModelFormatError(f"{folder}: the arrays' fingerprint {clf.fingerprint_} is not the "
                                         f"{state['classifier_fingerprint']} recorded in model.json; the files are "
                                         "damaged or mixed from two models")
        return cls(clf, state["embedder_name"], state["embedder_fingerprint"], float(state["oos_threshold"]),
                   state["oos_label"], embedder=embedder)


def fit_intent_model(texts: Sequence[str], labels: Sequence[str], embedder: object, C: float = 10.0,
                     oos_label: str = "oos", target_recall: float | None = None, holdout: float = 0.1,
                     seed: int = 0) -> IntentModel:
    """Fit on the in-scope rows; an optional OOS threshold keeps ``target_recall`` of a held-out in-scope fold.

    Rows labelled ``oos_label`` are not trained on (there is no OOS class). The threshold is the
    ``1 - target_recall`` quantile of the max probability on a stratified ``holdout`` fold of the
    in-scope rows, computed with a classifier fitted on the rest; the returned classifier is refitted
    on every in-scope row. ``target_recall=None`` (default): 0.95 when the data has ``oos_label`` rows
    (an out-of-scope class exists to be caught), else no threshold -- on a set without out-of-scope
    examples a cutoff would only turn about 5% of in-scope rows into wrong "oos" answers.
    ``embedder``: an object with ``encode_queries(texts)``, ``fingerprint`` and ``name`` (a registry
    name is resolved by the caller: ``registry.load_embedder("minilm")``; a str raises TypeError saying so).
    """
    if target_recall is None:
        target_recall = 0.95 if any(lab == oos_label for lab in labels) else 1.0
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    if isinstance(embedder, str):
        raise TypeError(f"fit_intent_model: embedder must be an embedder object, got the name {embedder!r}; "
                        f"load it first, e.g. registry.load_embedder({embedder!r})")
    name, emb = getattr(embedder, "name", type(embedder).__name__), embedder
    keep = [i for i, lab in enumerate(labels) if lab != oos_label]
    texts = [texts[i] for i in keep]
    y = np.asarray([labels[i] for i in keep])
    x = emb.encode_queries(list(texts))
    rng = np.random.default_rng(seed)
    hold = np.zeros(len(y), dtype=bool)
    for lab in np.unique(y):
        idx = np.flatnonzero(y == lab)
        if len(idx) >= 5:
            hold[rng.choice(idx, max(1, int(round(holdout * len(idx)))), replace=False)] = True
    threshold = 0.0
    if hold.any() and target_recall < 1.0:
        probe = EmbeddingIntentClassifier(C=C).fit(x[~hold], y[~hold])
        threshold = float(np.quantile(probe.predict_proba(x[hold]).max(1), 1.0 - target_recall))
    clf = EmbeddingIntentClassifier(C=C, embedder_fingerprint=emb.fingerprint).fit(x, y)
    return IntentModel(clf, name, emb.fingerprint, threshold, oos_label, embedder=emb)


def evaluate_intent(model: IntentModel, texts: Sequence[str], labels: Sequence[str]) -> dict:
    """In-scope accuracy (an OOS prediction counts as wrong), argmax accuracy, OOS recall/precision."""
    x = model.embedder.encode_queries(list(texts))
    pred, _ = model.predict_from_embeddings(x)
    y = np.asarray(labels, dtype=object)
    ins = y != model.oos_label
    argmax = model.classifier.predict(x[ins]) if ins.any() else np.array([])
    out = {"n_in_scope": int(ins.sum()), "n_oos": int((~ins).sum()), "oos_threshold": model.oos_threshold,
           "accuracy": float(np.mean(pred[ins] == y[ins])) if ins.any() else None,
           "accuracy_without_oos_threshold": float(np.mean(argmax == y[ins])) if ins.any() else None}
    if (~ins).any():
        flagged = pred == model.oos_label
        out["oos_recall"] = float(np.mean(flagged[~ins]))
        out["oos_precision"] = float(np.mean(~ins[flagged])) if flagged.any() else None
    return out


def _intent_card(info: dict) -> str:
    m = info.get("metrics", {})
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = "\n".join(f"| {k} | {fmt(v)} |" for k, v in m.items())
    oos = (f"out-of-scope when the max probability is below {info['oos_threshold']:.4f} (the threshold keeping 95% of a\n"
           "held-out in-scope fold of the training data, unless the command says otherwise)"
           if info["oos_threshold"] > 0 else
           "no out-of-scope cutoff (the training data had no out-of-scope class and none was asked for)")
    return f"""# intent classifier

Multinomial logistic regression (scikit-learn, C from the command) on L2-normalised embeddings of
`{info['embedder']}` (fingerprint `{info['embedder_fingerprint']}`); {info['n_intents']} intents;
{oos}. Code: `cascade/intent.py`
(`IntentModel`, `fit_intent_model`). Files: `model.json` (format {info['format']}, checked on load) with
`coef.npy` and `intercept.npy` (no pickle: loading cannot run code), `meta.json`.

Data: {info.get('data', '?')}; {info.get('n_train', '?')} training rows (out-of-scope rows are not trained on),
{info.get('n_test', '?')} test rows.

## Command

```
{info.get('command', '?')}
```

## Metrics (test)

| metric | value |
|---|---|
{rows}

`accuracy`: in-scope test utterances predicted with the right intent (an out-of-scope prediction counts
as wrong). `oos_recall`: out-of-scope test utterances flagged out-of-scope.

Date: {info.get('date', '?')}.
"""
