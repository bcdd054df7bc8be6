"""Labels of the chest X-ray benchmarks, built from the public tables.

**NoisyCXR** (paper Table 3; reference: InnerEye-DataQuality ``create_noisy_chestxray_dataset.py``
and ``noisy_kaggle_cxr.py``): the 26,684 RSNA Pneumonia Detection Challenge (2018) training
images, a subset of NIH ChestX-ray14. The truth is the RSNA radiologists' adjudicated label; the
noisy label is derived from the original NIH labels, which were mined from radiology reports.
Four public tables are joined:

- ``stage_2_train_labels.csv`` (one row per box; ``Target``) and
  ``stage_2_detailed_class_info.csv`` (its row-aligned class) → the RSNA label per patient;
- ``pneumonia-challenge-dataset-mappings_2018.json`` → each patient's original NIH labels and
  its ``StudyInstanceUID``;
- ``RSNA_pneumonia_all_probs.csv`` → every box any reader drew, with its confidence, which
  marks the ambiguous cases.

**NIH airspace** (Majkowska et al., Radiology 2019): 4,376 NIH images re-read by radiologists;
the noisy label is the NIH report label (pneumonia, consolidation or infiltration), the truth
the adjudicated "Airspace opacity".

The functions here are pure table transformations, plus the explicit ``read_*`` readers that
validate each file where it enters. The last section locates and reads the radiographs of both
datasets (shared by ``datasets/noisy_cxr.py`` and ``datasets/nih_airspace.py``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: The three classes of ``stage_2_detailed_class_info.csv``; only the first has boxes.
RSNA_CLASSES = ("Lung Opacity", "No Lung Opacity / Not Normal", "Normal")
#: Reader confidence of a box in ``RSNA_pneumonia_all_probs.csv`` (the reference's scale).
CONFIDENCE = {"Lung Opacity (Low Prob)": 1, "Lung Opacity (Med Prob)": 2, "Lung Opacity (High Prob)": 3}
#: NIH categories of paper Table 3, in the order of precedence of :func:`nih_category`.
NIH_CATEGORIES = ("pneumonia", "consolidation_infiltration", "no_finding", "other")
#: NIH report findings that count as a positive noisy label in the airspace-opacity variant.
AIRSPACE_FINDINGS = frozenset({"pneumonia", "consolidation", "infiltration"})
PAPER_SEED = 1234
FLIP_RATE = 0.1
TRAIN_FRACTION = 0.5


class TableFormatError(ValueError):
    """An input table lacks a column, holds an unexpected value or is inconsistent."""


# --------------------------------------------------------------------------------------------
# Readers


def read_table(path: Path | str, required: Sequence[str], *, id_columns: Sequence[str] = ()) -> pd.DataFrame:
    """A CSV file (plain or compressed) that must hold the ``required`` columns.

    ``id_columns`` are read as strings, so identifiers never turn into numbers.

    Raises:
        TableFormatError: the file cannot be parsed, or a column is missing (naming both).
    """
    try:
        df = pd.read_csv(path, dtype={c: str for c in id_columns})
    except (OSError, ValueError) as exc:  # pandas' parser errors are ValueErrors
        raise TableFormatError(f"{path}: cannot read as a CSV table ({exc})") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise TableFormatError(
            f"{path}: missing column(s) {', '.join(map(repr, missing))}; "
            f"expected at least {list(required)}, found {list(df.columns)}"
        )
    return df


def read_rsna_rows(labels_csv: Path | str, class_info_csv: Path | str) -> pd.DataFrame:
    """The RSNA training rows, one per box (or one box-less row per negative patient).

    ``stage_2_train_labels.csv`` (``patientId,x,y,width,height,Target``) and
    ``stage_2_detailed_class_info.csv`` (``patientId,class``) are row-aligned: row i of both
    describes the same patient, and ``class == "Lung Opacity"`` exactly when ``Target == 1``.
    Both facts are checked, so a file with a lost or reordered row is an error, not a silent
    misalignment.

    Returns:
        patientId, x, y, width, height, Target (0/1), class; in file order.

    Raises:
        TableFormatError: naming the file, the line and what is wrong.
    """
    labels = read_table(
        labels_csv, ["patientId", "x", "y", "width", "height", "Target"], id_columns=["patientId"]
    )
    classes = read_table(class_info_csv, ["patientId", "class"], id_columns=["patientId", "class"])
    target = pd.to_numeric(labels["Target"], errors="coerce")
    bad = ~target.isin([0, 1])
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise TableFormatError(
            f"{labels_csv}: line {i + 2}: Target must be 0 or 1, got {labels['Target'].iloc[i]!r}"
        )
    unknown = sorted(set(classes["class"].dropna()) - set(RSNA_CLASSES)) + (
        ["<empty>"] if classes["class"].isna().any() else []
    )
    if unknown:
        raise TableFormatError(
            f"{class_info_csv}: unknown class value(s) {unknown}; expected {list(RSNA_CLASSES)}"
        )
    if len(labels) != len(classes):
        raise TableFormatError(
            f"{labels_csv} has {len(labels)} rows but {class_info_csv} has {len(classes)}; "
            "the two files must be row-aligned (the challenge's stage-2 training files are)"
        )
    ids_l, ids_c = labels["patientId"].to_numpy(), classes["patientId"].to_numpy()
    mismatch = np.flatnonzero(ids_l != ids_c)
    if mismatch.size:
        i = int(mismatch[0])
        raise TableFormatError(
            f"{labels_csv} and {class_info_csv} are not row-aligned: line {i + 2} is patient "
            f"{ids_l[i]} in the first and {ids_c[i]} in the second"
        )
    box = (classes["class"] == RSNA_CLASSES[0]).to_numpy()
    conflict = np.flatnonzero(box != (target.to_numpy() == 1))
    if conflict.size:
        i = int(conflict[0])
        raise TableFormatError(
            f"{labels_csv} and {class_info_csv} disagree at line {i + 2} (patient {ids_l[i]}): "
            f"Target={int(target.iloc[i])} but class={classes['class'].iloc[i]!r}"
        )
    rows = labels[["patientId", "x", "y", "width", "height"]].copy()
    rows["Target"] = target.astype(np.int64).to_numpy()
    rows["class"] = classes["class"].to_numpy()
    return rows


def rsna_patients(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per patient, in order of first appearance.

    The RSNA label is positive when any of the patient's rows has ``Target == 1``;
    ``n_boxes`` counts those rows (the adjudicated boxes).

    Returns:
        patientId, rsna_label (0/1 int64), class, n_boxes (int64).

    Raises:
        TableFormatError: a patient has rows of more than one class.
    """
    groups = rows.groupby("patientId", sort=False)
    n_classes = groups["class"].nunique()
    if (n_classes > 1).any():
        bad = list(n_classes.index[n_classes > 1][:5])
        raise TableFormatError(f"RSNA class info: patient(s) {bad} have rows of more than one class")
    return pd.DataFrame(
        {
            "patientId": groups["Target"].max().index.to_numpy(),
            "rsna_label": groups["Target"].max().to_numpy().astype(np.int64),
            "class": groups["class"].first().to_numpy(),
            "n_boxes": groups["Target"].sum().to_numpy().astype(np.int64),
        }
    )


def read_rsna_labels(labels_csv: Path | str, class_info_csv: Path | str) -> pd.DataFrame:
    """Per-patient RSNA labels (see :func:`read_rsna_rows` and :func:`rsna_patients`)."""
    return rsna_patients(read_rsna_rows(labels_csv, class_info_csv))


def rsna_counts(rows: pd.DataFrame) -> dict[str, Any]:
    """Row- and patient-level counts of the RSNA tables, as published with the challenge.

    On the stage-2 training files: 30,227 rows and 26,684 patients (6,012 positive); rows by
    class Lung Opacity 9,555, No Lung Opacity / Not Normal 11,821, Normal 8,851.
    """
    patients = rsna_patients(rows)
    return {
        "rows": len(rows),
        "patients": len(patients),
        "positive_patients": int(patients["rsna_label"].sum()),
        "rows_by_class": {c: int((rows["class"] == c).sum()) for c in RSNA_CLASSES},
        "patients_by_class": {c: int((patients["class"] == c).sum()) for c in RSNA_CLASSES},
    }


def read_mapping(json_path: Path | str) -> pd.DataFrame:
    """The RSNA-to-NIH mapping ``pneumonia-challenge-dataset-mappings_2018.json``.

    A JSON list with one object per challenge image. Read are ``subset_img_id`` (the RSNA
    ``patientId``), ``orig_labels`` (the image's original NIH findings: a list of strings, or
    one ``|``-separated string), ``StudyInstanceUID`` (the key of the reader-confidence table)
    and, when present, ``img_id`` (the NIH ``Image Index``). Other fields are ignored. Entries
    repeated verbatim are kept once.

    Returns:
        subset_img_id, orig_labels (list[str]), StudyInstanceUID, img_id (str or None); in file order.

    Raises:
        TableFormatError: not a JSON list of objects, a required field missing (naming the
            entry), or one patient mapped twice with different contents.
    """
    try:
        with open(json_path, encoding="utf-8") as f:
            entries = json.load(f)
    except (OSError, ValueError) as exc:
        raise TableFormatError(f"{json_path}: cannot read as JSON ({exc})") from exc
    if not isinstance(entries, list):
        raise TableFormatError(
            f"{json_path}: expected a JSON list of objects, got a {type(entries).__name__}"
        )
    required = ("subset_img_id", "orig_labels", "StudyInstanceUID")
    records = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise TableFormatError(f"{json_path}: entry {i} is a {type(entry).__name__}, expected an object")
        missing = [k for k in required if k not in entry]
        if missing:
            raise TableFormatError(
                f"{json_path}: entry {i} lacks field(s) {', '.join(map(repr, missing))} "
                f"(every entry needs {list(required)})"
            )
        img_id = entry.get("img_id")
        records.append(
            {
                "subset_img_id": str(entry["subset_img_id"]),
                "orig_labels": _label_list(entry["orig_labels"], json_path, i),
                "StudyInstanceUID": str(entry["StudyInstanceUID"]),
                "img_id": None if img_id is None else str(img_id),
            }
        )
    mapping = pd.DataFrame.from_records(
        records, columns=["subset_img_id", "orig_labels", "StudyInstanceUID", "img_id"]
    )
    key = mapping.assign(orig_labels=mapping["orig_labels"].map(tuple))
    mapping = mapping[~key.duplicated()].reset_index(drop=True)
    repeated = mapping["subset_img_id"].duplicated(keep=False)
    if repeated.any():
        ids = sorted(set(mapping.loc[repeated, "subset_img_id"]))[:5]
        raise TableFormatError(f"{json_path}: patient(s) {ids} are mapped more than once, differently")
    return mapping


def _label_list(value: Any, path: Path | str, entry: int) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [s.strip() for s in value.split("|") if s.strip()]
    if isinstance(value, list | tuple):
        return [str(s) for s in value]
    raise TableFormatError(
        f"{path}: entry {entry}: orig_labels must be a list of strings, got {type(value).__name__}"
    )


def read_reader_confidence(csv_path: Path | str) -> pd.DataFrame:
    """Reader confidence per study, from ``RSNA_pneumonia_all_probs.csv``.

    The file has one row per box drawn by any reader during the adjudication; its
    ``labelName`` is mapped to a confidence (Low Prob = 1, Med Prob = 2, High Prob = 3).
    Studies in which no reader drew a box are absent from the file, and so from the result.

    Returns:
        StudyInstanceUID, min_conf, max_conf (int64), mean_conf (float64), n_boxes (int64):
        one row per study, in order of first appearance.

    Raises:
        TableFormatError: a column is missing, or a ``labelName`` is not one of the three.
    """
    probs = read_table(
        csv_path, ["StudyInstanceUID", "labelName"], id_columns=["StudyInstanceUID", "labelName"]
    )
    names = probs["labelName"].str.strip()
    conf = names.map(CONFIDENCE)
    if conf.isna().any():
        unknown = sorted({str(v) for v in names[conf.isna()]})[:5]
        raise TableFormatError(
            f"{csv_path}: unknown labelName value(s) {unknown}; expected {list(CONFIDENCE)}"
        )
    groups = conf.astype(np.int64).groupby(probs["StudyInstanceUID"], sort=False)
    return pd.DataFrame(
        {
            "StudyInstanceUID": groups.min().index.to_numpy(),
            "min_conf": groups.min().to_numpy(),
            "max_conf": groups.max().to_numpy(),
            "mean_conf": groups.mean().to_numpy(),
            "n_boxes": groups.size().to_numpy().astype(np.int64),
        }
    )


# --------------------------------------------------------------------------------------------
# NoisyCXR


def nih_category(orig_labels: Sequence[str] | str) -> str:
    """The Table-3 category of an image's original NIH labels (lower-cased substring matching).

    In order of precedence: any label containing "pneumonia" → ``"pneumonia"``; else
    "infiltration" or "consolidation" → ``"consolidation_infiltration"``; else "no finding" →
    ``"no_finding"``; else (another disease, or no label at all) → ``"other"``.
    """
    text = orig_labels if isinstance(orig_labels, str) else "|".join(orig_labels)
    text = text.lower()
    if "pneumonia" in text:
        return "pneumonia"
    if "infiltration" in text or "consolidation" in text:
        return "consolidation_infiltration"
    if "no finding" in text:
        return "no_finding"
    return "other"


def build_noisy_cxr(
    rsna: pd.DataFrame,
    mapping: pd.DataFrame,
    confidence: pd.DataFrame,
    *,
    seed: int = PAPER_SEED,
    flip_rate: float = FLIP_RATE,
    train_fraction: float = TRAIN_FRACTION,
    ambiguous_weight: int = 2,
) -> pd.DataFrame:
    """The NoisyCXR labels of paper Table 3, drawn exactly as the reference code draws them.

    Args:
        rsna: per-patient RSNA labels (:func:`read_rsna_labels`).
        mapping: the RSNA-to-NIH mapping (:func:`read_mapping`).
        confidence: per-study reader confidence (:func:`read_reader_confidence`).

    Rules:
        - Samples are the patients present in both ``mapping`` and ``rsna``, in **mapping
          order** (the reference's inner joins keep it; every random draw below depends on it).
        - True label: the RSNA label.
        - Noisy label by NIH category (:func:`nih_category`): pneumonia → 1; no finding or
          another disease → 0; consolidation/infiltration → the RSNA label, after which
          ``int(n * flip_rate)`` of those n patients (10 %, truncated as in the reference) get
          it flipped: ``rs = RandomState(seed)``,
          ``rs.choice(<their patientIds in sample order>, k, replace=False)``.
        - Split: the same generator then draws ``rs.permutation(N)``; its first
          ``int(N * train_fraction)`` entries are the training split, the rest evaluation;
          ``split_rank`` is each sample's position in its split in that permuted order (the
          reference's sample order).
        - Ambiguous: RSNA positive and every reader box of the study was Low Prob
          (min = max = 1); or RSNA negative while some reader drew a box. Its true
          distribution is ``ambiguous_weight : 1`` for the RSNA label, normalised: with the
          default 2, 2/3 on the RSNA label and 1/3 on the other (the 2:1 of the issue, of
          DESIGN.md and of the reference's comment "[0, 1] -> [1, 2]"). Clear cases are one-hot.
          Note: the reference's code computes ``one_hot * 2 + 1``, which is 3:1, not the 2:1
          its comment states; ``ambiguous_weight=3`` reproduces that arithmetic.

    Returns:
        One row per sample: patientId, StudyInstanceUID, img_id, orig_labels, nih_category,
        rsna_label (true), noisy_label, flipped, ambiguous, min_conf, max_conf, mean_conf,
        n_reader_boxes, true_dist_0, true_dist_1, split ("train"/"eval"), split_rank.
    """
    _require(rsna, ["patientId", "rsna_label"], "rsna")
    _require(mapping, ["subset_img_id", "orig_labels", "StudyInstanceUID"], "mapping")
    _require(confidence, ["StudyInstanceUID", "min_conf", "max_conf", "mean_conf", "n_boxes"], "confidence")
    if not 0.0 <= flip_rate <= 1.0:
        raise ValueError(f"flip_rate must lie in [0, 1], got {flip_rate}")
    if ambiguous_weight < 1:
        raise ValueError(f"ambiguous_weight must be >= 1, got {ambiguous_weight}")
    if not 0.0 < train_fraction <= 1.0:
        raise ValueError(f"train_fraction must lie in (0, 1], got {train_fraction}")

    rsna_by_id = rsna.set_index("patientId")
    table = mapping[mapping["subset_img_id"].isin(rsna_by_id.index)].reset_index(drop=True)
    table = table.rename(columns={"subset_img_id": "patientId"})
    if "img_id" not in table.columns:
        table["img_id"] = None
    table["nih_category"] = [nih_category(labels) for labels in table["orig_labels"]]
    table["rsna_label"] = rsna_by_id.loc[table["patientId"], "rsna_label"].to_numpy().astype(np.int64)
    conf = confidence.set_index("StudyInstanceUID")
    for col in ("min_conf", "max_conf", "mean_conf"):
        table[col] = table["StudyInstanceUID"].map(conf[col]).astype(np.float64)
    table["n_reader_boxes"] = table["StudyInstanceUID"].map(conf["n_boxes"]).fillna(0).astype(np.int64)

    category = table["nih_category"].to_numpy()
    rsna_label = table["rsna_label"].to_numpy()
    like = category == "consolidation_infiltration"
    noisy = np.where(category == "pneumonia", 1, np.where(like, rsna_label, 0)).astype(np.int64)

    rs = np.random.RandomState(seed)
    pool = table["patientId"].to_numpy(dtype=object)[like]
    chosen = rs.choice(pool, size=int(len(pool) * flip_rate), replace=False)
    flipped = table["patientId"].isin(set(chosen)).to_numpy()
    noisy[flipped] = 1 - noisy[flipped]

    n = len(table)
    order = rs.permutation(n)
    n_train = int(n * train_fraction)
    split = np.empty(n, dtype=object)
    split[order[:n_train]], split[order[n_train:]] = "train", "eval"
    rank = np.empty(n, dtype=np.int64)
    rank[order[:n_train]], rank[order[n_train:]] = np.arange(n_train), np.arange(n - n_train)

    has_boxes = table["n_reader_boxes"].to_numpy() > 0
    only_low = (table["min_conf"].to_numpy() == 1) & (table["max_conf"].to_numpy() == 1)
    ambiguous = np.where(rsna_label == 1, has_boxes & only_low, has_boxes)
    counts = np.eye(2)[rsna_label]
    counts[ambiguous] = counts[ambiguous] * (ambiguous_weight - 1) + 1
    dist = counts / counts.sum(axis=1, keepdims=True)

    table["noisy_label"] = noisy
    table["flipped"] = flipped
    table["ambiguous"] = ambiguous
    table["true_dist_0"], table["true_dist_1"] = dist[:, 0], dist[:, 1]
    table["split"] = split
    table["split_rank"] = rank
    columns = [
        "patientId", "StudyInstanceUID", "img_id", "orig_labels", "nih_category", "rsna_label",
        "noisy_label", "flipped", "ambiguous", "min_conf", "max_conf", "mean_conf", "n_reader_boxes",
        "true_dist_0", "true_dist_1", "split", "split_rank",
    ]  # fmt: skip
    return table[columns]


# --------------------------------------------------------------------------------------------
# NIH airspace opacity (Majkowska et al. 2019)

_YES = {"yes", "y", "true", "1", "1.0"}
_NO = {"no", "n", "false", "0", "0.0"}


def build_nih_airspace(google: pd.DataFrame, data_entry: pd.DataFrame | None = None) -> pd.DataFrame:
    """Noisy NIH report labels against radiologists' airspace-opacity labels, one row per image.

    Args:
        google: the Google (2019) expert labels (``google2019_nih-chest-xray-labels.csv.gz``):
            ``Image Index``, ``Airspace opacity`` (YES/NO, any case; also Y/N, TRUE/FALSE,
            1/0) and, usually, the NIH ``Finding Labels``.
        data_entry: NIH ``Data_Entry_2017*.csv`` (``Image Index``, ``Finding Labels``); only
            read when ``google`` lacks ``Finding Labels``.

    Rules:
        - Noisy label: 1 when the NIH ``Finding Labels`` (``|``-separated, case-insensitive)
          include Pneumonia, Consolidation or Infiltration, else 0.
        - True label: 1 when ``Airspace opacity`` is YES. An image listed on several rows (a
          per-reader table rather than the adjudicated one) gets the majority of its rows;
          a tie counts as YES, because an opacity that half of the readers saw is not a clear
          negative.
        - Images keep the order of their first row in ``google``.

    Returns:
        image_id, finding_labels, noisy_label (0/1), true_label (0/1), n_reads.

    Raises:
        TableFormatError: a column is missing, a value of ``Airspace opacity`` is not a yes/no,
            or an image has no NIH labels.
    """
    _require(google, ["Image Index", "Airspace opacity"], "Google expert labels")
    raw = google["Airspace opacity"].astype(str).str.strip().str.lower()
    yes, no = raw.isin(_YES), raw.isin(_NO)
    if not (yes | no).all():
        bad = sorted(set(google.loc[~(yes | no), "Airspace opacity"].astype(str)))[:5]
        raise TableFormatError(f"Google expert labels: 'Airspace opacity' must be YES or NO, got {bad}")
    ids = google["Image Index"].astype(str)
    if "Finding Labels" in google.columns:
        findings = google["Finding Labels"]
    else:
        if data_entry is None:
            raise TableFormatError(
                "Google expert labels lack 'Finding Labels'; pass the NIH Data_Entry table to join them"
            )
        _require(data_entry, ["Image Index", "Finding Labels"], "NIH Data_Entry")
        findings = ids.map(
            data_entry.drop_duplicates("Image Index").set_index("Image Index")["Finding Labels"]
        )
    if findings.isna().any():
        missing = list(ids[findings.isna()][:5])
        raise TableFormatError(f"no NIH 'Finding Labels' for image(s) {missing}")

    per_image = pd.DataFrame({"image_id": ids, "findings": findings.astype(str), "yes": yes.astype(np.int64)})
    groups = per_image.groupby("image_id", sort=False)
    n_reads = groups["yes"].size()
    votes = groups["yes"].sum()
    finding_labels = groups["findings"].first()
    noisy = [int(bool(AIRSPACE_FINDINGS & {s.strip().lower() for s in f.split("|")})) for f in finding_labels]
    return pd.DataFrame(
        {
            "image_id": n_reads.index.to_numpy(),
            "finding_labels": finding_labels.to_numpy(),
            "noisy_label": np.asarray(noisy, dtype=np.int64),
            "true_label": (2 * votes.to_numpy() >= n_reads.to_numpy()).astype(np.int64),
            "n_reads": n_reads.to_numpy().astype(np.int64),
        }
    )


def label_summary(
    true_labels: np.ndarray, noisy_labels: np.ndarray, class_names: Sequence[str]
) -> dict[str, Any]:
    """Class counts of the true and noisy labels, their cross-tabulation and the noise rate."""
    true_labels, noisy_labels = np.asarray(true_labels), np.asarray(noisy_labels)
    return {
        "n": int(true_labels.size),
        "true_class_counts": {c: int(np.sum(true_labels == k)) for k, c in enumerate(class_names)},
        "noisy_class_counts": {c: int(np.sum(noisy_labels == k)) for k, c in enumerate(class_names)},
        "noisy_vs_true": {
            f"noisy={cn},true={ct}": int(np.sum((noisy_labels == kn) & (true_labels == kt)))
            for kn, cn in enumerate(class_names)
            for kt, ct in enumerate(class_names)
        },
        "noise_rate": float(np.mean(true_labels != noisy_labels)) if true_labels.size else 0.0,
    }


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TableFormatError(f"{what}: missing column(s) {missing}; found {list(df.columns)}")
