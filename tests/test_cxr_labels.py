"""NoisyCXR and NIH-airspace labels follow paper Table 3 and the reference's random draws.

Synthetic tables are written in the real files' formats (the mapping JSON and the reader
confidence table are not in the shared data); the RSNA and NIH tables that are there are
checked against their published counts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import plugin_helper

_labels = plugin_helper("datasets", "_cxr_labels")
TableFormatError = _labels.TableFormatError
build_nih_airspace = _labels.build_nih_airspace
build_noisy_cxr = _labels.build_noisy_cxr
nih_category = _labels.nih_category
read_mapping = _labels.read_mapping
read_reader_confidence = _labels.read_reader_confidence
read_rsna_labels = _labels.read_rsna_labels
read_rsna_rows = _labels.read_rsna_rows
rsna_counts = _labels.rsna_counts

LOW, MED, HIGH = "Lung Opacity (Low Prob)", "Lung Opacity (Med Prob)", "Lung Opacity (High Prob)"
LABELS, CLASS_INFO = "stage_2_train_labels.csv", "stage_2_detailed_class_info.csv"
MAPPING, PROBS = "pneumonia-challenge-dataset-mappings_2018.json", "RSNA_pneumonia_all_probs.csv"


@dataclass
class Patient:
    """One synthetic challenge image: its NIH labels, RSNA boxes and the readers' boxes."""

    pid: str
    orig_labels: list[str]
    rsna_boxes: int = 0  # 0: RSNA negative
    reader_boxes: list[str] = field(default_factory=list)  # labelName of each reader box

    @property
    def study(self) -> str:
        return f"1.2.276.0.7230010.3.1.2.{self.pid}"


def write_tables(folder: Path, patients: list[Patient], *, rsna_order: list[Patient] | None = None) -> Path:
    """The four NoisyCXR inputs in their real formats; the mapping lists ``patients`` in order,
    the RSNA files list ``rsna_order`` (default: reversed, so that the two orders differ)."""
    folder.mkdir(parents=True, exist_ok=True)
    label_rows, class_rows = ["patientId,x,y,width,height,Target"], ["patientId,class"]
    for k, p in enumerate(rsna_order if rsna_order is not None else patients[::-1]):
        if p.rsna_boxes == 0:
            label_rows.append(f"{p.pid},,,,,0")
            class_rows.append(f"{p.pid},{'Normal' if k % 2 else 'No Lung Opacity / Not Normal'}")
        for b in range(p.rsna_boxes):
            label_rows.append(f"{p.pid},{100.0 + b},{200.0 + b},{50.0},{60.0},1")
            class_rows.append(f"{p.pid},Lung Opacity")
    (folder / LABELS).write_text("\n".join(label_rows) + "\n")
    (folder / CLASS_INFO).write_text("\n".join(class_rows) + "\n")
    mapping = [
        {
            "img_id": f"{k:08d}_000.png",
            "subset_img_id": p.pid,
            "orig_labels": p.orig_labels,
            "StudyInstanceUID": p.study,
            "SOPInstanceUID": f"{p.study}.1",
            "dataset": "train",
        }
        for k, p in enumerate(patients)
    ]
    (folder / MAPPING).write_text(json.dumps(mapping))
    probs = ["createdById,StudyInstanceUID,SeriesInstanceUID,SOPInstanceUID,labelName,data"]
    for p in patients:
        for r, name in enumerate(p.reader_boxes):
            probs.append(f'reader{r},{p.study},{p.study}.0,{p.study}.1,{name},"{{""x"": 1, ""y"": 2}}"')
    (folder / PROBS).write_text("\n".join(probs) + "\n")
    return folder


def build(folder: Path, **kwargs: object) -> pd.DataFrame:
    table = build_noisy_cxr(
        read_rsna_labels(folder / LABELS, folder / CLASS_INFO),
        read_mapping(folder / MAPPING),
        read_reader_confidence(folder / PROBS),
        **kwargs,  # type: ignore[arg-type]
    )
    return table.set_index("patientId", drop=False)


def population(n_like: int = 40) -> list[Patient]:
    """Patients of every category; ``n_like`` consolidation/infiltration ones, half RSNA positive."""
    patients = [
        Patient("pneu-neg", ["Pneumonia"]),
        Patient("pneu-pos", ["Infiltration", "Pneumonia"], 2, [HIGH, HIGH]),
        Patient("nofind-pos", ["No Finding"], 1, [MED]),
        Patient("nofind-neg", ["No Finding"]),
        Patient("other-pos", ["Effusion", "Mass"], 1, [HIGH]),
        Patient("other-neg", ["Pneumothorax"]),
        Patient("amb-pos", ["Pneumonia"], 1, [LOW, LOW]),
        Patient("mixed-pos", ["Pneumonia"], 1, [LOW, HIGH]),
        Patient("amb-neg", ["No Finding"], 0, [MED]),
        Patient("clear-pos-no-reader-rows", ["Pneumonia"], 1),
    ]
    for k in range(n_like):
        finding = ["Consolidation"] if k % 3 else ["Infiltration", "Atelectasis"]
        patients.append(Patient(f"like-{k:03d}", finding, 1 if k % 2 else 0, [HIGH] if k % 2 else []))
    return patients


@pytest.fixture
def tables(tmp_path: Path) -> Path:
    return write_tables(tmp_path / "rsna", population())


# -------------------------------------------------------------------------------- NIH category


@pytest.mark.parametrize(
    ("labels", "category"),
    [
        (["Pneumonia"], "pneumonia"),
        (["Consolidation", "Pneumonia"], "pneumonia"),
        (["INFILTRATION"], "consolidation_infiltration"),
        (["Effusion", "Consolidation"], "consolidation_infiltration"),
        (["No Finding"], "no_finding"),
        (["Pneumothorax"], "other"),
        (["Atelectasis", "Mass"], "other"),
        ([], "other"),
        ("Infiltration|Pneumonia", "pneumonia"),
    ],
)
def test_nih_category_matches_lower_cased_labels_in_order_of_precedence(labels, category):
    assert nih_category(labels) == category


# -------------------------------------------------------------------------------- noisy labels


def test_nih_pneumonia_is_a_positive_noisy_label_whatever_rsna_says(tables):
    table = build(tables)
    assert list(table.loc["pneu-neg", ["rsna_label", "noisy_label"]]) == [0, 1]
    assert list(table.loc["pneu-pos", ["rsna_label", "noisy_label"]]) == [1, 1]


def test_no_finding_is_a_negative_noisy_label_whatever_rsna_says(tables):
    table = build(tables)
    assert list(table.loc["nofind-pos", ["nih_category", "rsna_label", "noisy_label"]]) == [
        "no_finding",
        1,
        0,
    ]
    assert table.loc["nofind-neg", "noisy_label"] == 0


def test_other_disease_is_a_negative_noisy_label_whatever_rsna_says(tables):
    table = build(tables)
    assert list(table.loc["other-pos", ["nih_category", "rsna_label", "noisy_label"]]) == ["other", 1, 0]
    assert list(table.loc["other-neg", ["nih_category", "noisy_label"]]) == ["other", 0]


def test_consolidation_infiltration_takes_the_rsna_label_with_exactly_10_percent_flipped(tables):
    table = build(tables)
    like = table[table["nih_category"] == "consolidation_infiltration"]
    assert len(like) == 40
    assert like["flipped"].sum() == 4
    assert (
        like["noisy_label"] == np.where(like["flipped"], 1 - like["rsna_label"], like["rsna_label"])
    ).all()
    assert not table.loc[table["nih_category"] != "consolidation_infiltration", "flipped"].any()


def test_flips_are_the_reference_draw_for_seed_1234_over_mapping_order(tables):
    """RandomState(1234).choice over the consolidation/infiltration ids, in mapping order."""
    ids = [p.pid for p in population() if nih_category(p.orig_labels) == "consolidation_infiltration"]
    expected = set(np.random.RandomState(1234).choice(np.array(ids, dtype=object), 4, replace=False))
    table = build(tables)
    assert set(table.index[table["flipped"]]) == expected
    assert set(build(tables).index[build(tables)["flipped"]]) == expected
    assert set(build(tables, seed=7).index[build(tables, seed=7)["flipped"]]) != expected


def test_flip_count_truncates_like_the_reference(tmp_path):
    table = build(write_tables(tmp_path, population(n_like=59)))
    assert table["flipped"].sum() == 5  # int(59 * 0.1), not round(5.9)


def test_samples_follow_the_mapping_order_not_the_rsna_file_order(tmp_path):
    patients = population()
    a = build(write_tables(tmp_path / "a", patients, rsna_order=patients))
    b = build(write_tables(tmp_path / "b", patients, rsna_order=patients[::-1]))
    assert list(a.index) == [p.pid for p in patients] == list(b.index)
    pd.testing.assert_frame_equal(a, b)


def test_patients_missing_from_the_mapping_or_from_rsna_are_dropped(tmp_path):
    patients = population()
    folder = write_tables(tmp_path, patients, rsna_order=patients[1:])
    mapping = json.loads((folder / MAPPING).read_text())
    (folder / MAPPING).write_text(json.dumps(mapping[:-1]))
    table = build(folder)
    assert list(table.index) == [p.pid for p in patients[1:-1]]


# -------------------------------------------------------------------------------- true distribution


def test_rsna_positive_with_only_low_prob_boxes_is_ambiguous_two_to_one_positive(tables):
    row = build(tables).loc["amb-pos"]
    assert row["ambiguous"] and row["rsna_label"] == 1
    np.testing.assert_allclose(row[["true_dist_0", "true_dist_1"]].to_numpy(float), [1 / 3, 2 / 3])


def test_rsna_negative_where_a_reader_drew_a_box_is_ambiguous_two_to_one_negative(tables):
    row = build(tables).loc["amb-neg"]
    assert row["ambiguous"] and row["rsna_label"] == 0
    np.testing.assert_allclose(row[["true_dist_0", "true_dist_1"]].to_numpy(float), [2 / 3, 1 / 3])


def test_ambiguous_weight_3_gives_the_reference_codes_three_to_one(tables):
    table = build(tables, ambiguous_weight=3)
    np.testing.assert_allclose(
        table.loc["amb-pos", ["true_dist_0", "true_dist_1"]].to_numpy(float), [0.25, 0.75]
    )
    np.testing.assert_allclose(
        table.loc["amb-neg", ["true_dist_0", "true_dist_1"]].to_numpy(float), [0.75, 0.25]
    )


@pytest.mark.parametrize(
    ("pid", "label"),
    [("mixed-pos", 1), ("pneu-pos", 1), ("clear-pos-no-reader-rows", 1), ("nofind-neg", 0), ("other-neg", 0)],
)
def test_clear_cases_have_one_hot_true_distributions(tables, pid, label):
    row = build(tables).loc[pid]
    assert not row["ambiguous"] and row["rsna_label"] == label
    np.testing.assert_array_equal(row[["true_dist_0", "true_dist_1"]].to_numpy(float), np.eye(2)[label])


def test_reader_confidence_aggregates_per_study(tables):
    conf = read_reader_confidence(tables / PROBS).set_index("StudyInstanceUID")
    study = Patient("mixed-pos", []).study
    assert list(conf.loc[study, ["min_conf", "max_conf", "n_boxes"]]) == [1, 3, 2]
    assert conf.loc[study, "mean_conf"] == 2.0


# -------------------------------------------------------------------------------- split


def test_split_is_half_train_half_eval_from_the_same_generator_after_the_flips(tables):
    table = build(tables)
    n = len(table)
    rs = np.random.RandomState(1234)
    ids = [p.pid for p in population() if nih_category(p.orig_labels) == "consolidation_infiltration"]
    rs.choice(np.array(ids, dtype=object), 4, replace=False)
    order = rs.permutation(n)
    train = table[table["split"] == "train"].sort_values("split_rank")
    evaluation = table[table["split"] == "eval"].sort_values("split_rank")
    assert len(train) == n // 2 and len(evaluation) == n - n // 2
    assert list(train.index) == list(table.index[order[: n // 2]])
    assert list(evaluation.index) == list(table.index[order[n // 2 :]])
    pd.testing.assert_frame_equal(build(tables), table)


def test_odd_sized_sets_put_the_extra_sample_in_evaluation(tmp_path):
    table = build(write_tables(tmp_path, population(n_like=41)))
    assert len(table) == 51
    assert (table["split"] == "train").sum() == 25


# -------------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    ("filename", "column"),
    [(LABELS, "Target"), (CLASS_INFO, "class"), (PROBS, "labelName"), (PROBS, "StudyInstanceUID")],
)
def test_a_missing_column_is_an_error_naming_file_and_column(tables, filename, column):
    path = tables / filename
    pd.read_csv(path).drop(columns=[column]).to_csv(path, index=False)
    with pytest.raises(TableFormatError, match=rf"{filename}.*'{column}'"):
        build(tables)


@pytest.mark.parametrize("field_name", ["orig_labels", "subset_img_id", "StudyInstanceUID"])
def test_a_mapping_entry_without_a_field_is_an_error_naming_file_and_field(tables, field_name):
    entries = json.loads((tables / MAPPING).read_text())
    del entries[3][field_name]
    (tables / MAPPING).write_text(json.dumps(entries))
    with pytest.raises(TableFormatError, match=rf"{MAPPING}: entry 3 lacks field\(s\) '{field_name}'"):
        read_mapping(tables / MAPPING)


def test_mapping_keeps_the_nih_image_id_and_ignores_extra_fields(tables):
    mapping = read_mapping(tables / MAPPING)
    assert list(mapping.columns) == ["subset_img_id", "orig_labels", "StudyInstanceUID", "img_id"]
    assert mapping["img_id"].iloc[0] == "00000000_000.png"
    assert mapping["orig_labels"].iloc[1] == ["Infiltration", "Pneumonia"]


def test_class_info_with_a_lost_row_is_an_alignment_error_naming_both_files(tables):
    path = tables / CLASS_INFO
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:5] + lines[6:]) + "\n")
    with pytest.raises(TableFormatError, match=f"{LABELS} has 51 rows but .*{CLASS_INFO} has 50"):
        read_rsna_rows(tables / LABELS, path)


def test_reordered_rows_are_an_alignment_error_naming_the_line(tables):
    path = tables / CLASS_INFO
    lines = path.read_text().splitlines()
    lines[1], lines[-1] = lines[-1], lines[1]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(TableFormatError, match="not row-aligned: line 2"):
        read_rsna_rows(tables / LABELS, path)


def test_an_unknown_reader_label_is_an_error_naming_it(tables):
    path = tables / PROBS
    path.write_text(path.read_text().replace(MED, "Lung Opacity (Maybe)"))
    with pytest.raises(TableFormatError, match=r"RSNA_pneumonia_all_probs.csv.*Lung Opacity \(Maybe\)"):
        read_reader_confidence(path)


# -------------------------------------------------------------------------------- NIH airspace


def google_table(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["Image Index", "Finding Labels", "Airspace opacity"])


def test_nih_airspace_noisy_label_is_pneumonia_consolidation_or_infiltration_in_the_report():
    table = build_nih_airspace(
        google_table(
            [
                ("a.png", "Pneumonia", "YES"),
                ("b.png", "Effusion|Consolidation", "NO"),
                ("c.png", "Infiltration", "yes"),
                ("d.png", "No Finding", "YES"),
                ("e.png", "Pneumothorax", "no"),
            ]
        )
    )
    assert table["noisy_label"].tolist() == [1, 1, 1, 0, 0]
    assert table["true_label"].tolist() == [1, 0, 1, 1, 0]


def test_nih_airspace_joins_finding_labels_from_data_entry_when_absent():
    google = pd.DataFrame({"Image Index": ["b.png", "a.png"], "Airspace opacity": ["NO", "YES"]})
    entry = pd.DataFrame(
        {"Image Index": ["a.png", "b.png", "c.png"], "Finding Labels": ["Mass", "Pneumonia", "x"]}
    )
    table = build_nih_airspace(google, entry)
    assert table["image_id"].tolist() == ["b.png", "a.png"]
    assert table["noisy_label"].tolist() == [1, 0]
    with pytest.raises(TableFormatError, match="Finding Labels"):
        build_nih_airspace(google)


def test_nih_airspace_image_on_several_rows_takes_the_majority_with_ties_as_yes():
    table = build_nih_airspace(
        google_table(
            [("a.png", "No Finding", "YES"), ("a.png", "No Finding", "NO"), ("a.png", "No Finding", "NO")]
            + [("b.png", "Mass", "YES"), ("b.png", "Mass", "NO")]
        )
    )
    assert table.set_index("image_id")["true_label"].to_dict() == {"a.png": 0, "b.png": 1}
    assert table["n_reads"].tolist() == [3, 2]


def test_nih_airspace_rejects_values_that_are_not_yes_or_no():
    with pytest.raises(TableFormatError, match="UNCERTAIN"):
        build_nih_airspace(google_table([("a.png", "Mass", "UNCERTAIN")]))


# -------------------------------------------------------------------------------- real files


def test_real_rsna_tables_parse_to_the_published_counts(data_root):
    folder = data_root / "noisy_pneumonia" / "rsna_kaggle"
    counts = rsna_counts(read_rsna_rows(folder / LABELS, folder / CLASS_INFO))
    assert counts["rows"] == 30_227
    assert counts["patients"] == 26_684
    assert counts["positive_patients"] == 6_012
    assert counts["rows_by_class"] == {
        "Lung Opacity": 9_555,
        "No Lung Opacity / Not Normal": 11_821,
        "Normal": 8_851,
    }
    assert counts["patients_by_class"]["Lung Opacity"] == 6_012


def test_real_nih_airspace_labels_disagree_on_35_3_percent(data_root):
    folder = data_root / "noisy_pneumonia" / "nih"
    google = pd.read_csv(folder / "google2019_nih-chest-xray-labels.csv.gz")
    table = build_nih_airspace(google)
    assert len(table) == 4_376
    noisy, true = table["noisy_label"], table["true_label"]
    assert ((noisy == 1) & (true == 0)).sum() == 286
    assert ((noisy == 0) & (true == 1)).sum() == 1_258
    assert (noisy != true).mean() == pytest.approx(0.3528, abs=5e-5)
    joined = build_nih_airspace(
        google.drop(columns=["Finding Labels"]), pd.read_csv(folder / "Data_Entry_2017_v2020.csv.gz")
    )
    pd.testing.assert_frame_equal(joined, table)
