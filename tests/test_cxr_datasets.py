"""The chest X-ray dataset plugins: files found under a data root, clear errors for missing
ones, images in sample order, and unreadable images skipped only when asked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from test_cxr_labels import CLASS_INFO, LABELS, MAPPING, PROBS, build, population, write_tables

from benchmark import registry
from benchmark.dataroot import DataNotFoundError
from benchmark.radiographs import ImageReadError

SIZE = 16
GOOGLE = "google2019_nih-chest-xray-labels.csv.gz"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No $ALCBENCH_DATA and an empty user cache, so only what the test names is found."""
    monkeypatch.delenv("ALCBENCH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def picture(code: int) -> np.ndarray:
    """A 16x16 image whose pixel (1, 1) identifies the sample; full 0..255 range."""
    image = np.full((SIZE, SIZE), code, dtype=np.uint8)
    image[0, 0], image[0, 1] = 0, 255
    return image


def write_dicom(path: Path, pixels: np.ndarray) -> None:
    """An 8-bit MONOCHROME2 file, as the RSNA challenge images are."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "CR", path.stem
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


CODES = {p.pid: k + 1 for k, p in enumerate(population())}


@pytest.fixture
def rsna_root(tmp_path: Path) -> Path:
    """A data root with the four tables and one image per patient (PNG, one DICOM)."""
    root = tmp_path / "root"
    folder = write_tables(root / "noisy_pneumonia" / "rsna_kaggle", population())
    images = folder / "stage_2_train_images"
    images.mkdir()
    for pid, code in CODES.items():
        if pid == "amb-pos":
            write_dicom(images / f"{pid}.dcm", picture(code))
        else:
            Image.fromarray(picture(code)).save(images / f"{pid}.png")
    return root


def load(spec: str, root: Path):
    return registry.create("dataset", spec).load(root)


# -------------------------------------------------------------------------------- noisy_cxr


def test_noisy_cxr_builds_the_training_split_with_budget_multiplier_2_5(rsna_root):
    task = load("noisy_cxr", rsna_root)
    table = build(rsna_root / "noisy_pneumonia" / "rsna_kaggle")
    train = table[table["split"] == "train"].sort_values("split_rank")
    assert task.n_samples == 25 == len(population()) // 2
    assert list(task.sample_ids) == list(train.index)
    np.testing.assert_array_equal(task.noisy_labels, train["noisy_label"])
    np.testing.assert_array_equal(task.true_labels, train["rsna_label"])
    assert task.budget_multiplier == 2.5
    assert task.class_names == ("negative", "pneumonia")
    assert task.noise_rate == pytest.approx((train["noisy_label"] != train["rsna_label"]).mean())
    assert task.info["noise_rate"] == pytest.approx(task.noise_rate)
    assert sum(task.info["true_class_counts"].values()) == 25
    assert task.info["skipped_inputs"] == []


def test_noisy_cxr_eval_split_is_the_complement(rsna_root):
    train, evaluation = load("noisy_cxr", rsna_root), load("noisy_cxr[split=eval]", rsna_root)
    assert evaluation.n_samples == 25
    assert set(train.sample_ids) | set(evaluation.sample_ids) == set(CODES)
    assert not set(train.sample_ids) & set(evaluation.sample_ids)


def test_noisy_cxr_images_are_loaded_in_sample_order_from_png_and_dicom(rsna_root):
    task = load(f"noisy_cxr[image_size={SIZE}]", rsna_root)
    images = task.load_images()
    assert images.shape == (task.n_samples, SIZE, SIZE) and images.dtype == np.uint8
    assert [int(im[1, 1]) for im in images] == [CODES[pid] for pid in task.sample_ids]


def test_noisy_cxr_images_are_resized_to_image_size(rsna_root):
    images = load("noisy_cxr[image_size=8]", rsna_root).load_images()
    assert images.shape[1:] == (8, 8)


@pytest.mark.parametrize("folder", ["rsna", "."])
def test_noisy_cxr_tables_are_also_found_under_rsna_or_the_root_itself(rsna_root, tmp_path, folder):
    other = tmp_path / "other"
    (other / folder).parent.mkdir(parents=True, exist_ok=True)
    (rsna_root / "noisy_pneumonia" / "rsna_kaggle").rename(other / folder)
    task = load(f"noisy_cxr[image_size={SIZE}]", other)
    assert task.n_samples == 25 and task.load_images().shape == (25, SIZE, SIZE)


def test_noisy_cxr_without_the_mapping_names_the_file_and_where_to_get_it(rsna_root):
    (rsna_root / "noisy_pneumonia" / "rsna_kaggle" / MAPPING).unlink()
    with pytest.raises(DataNotFoundError) as err:
        load("noisy_cxr", rsna_root)
    message = str(err.value)
    assert MAPPING in message
    assert "published by RSNA with the challenge" in message
    assert "https://s3.amazonaws.com/east1.public.rsna.org/AI/2018/" in message
    assert str(rsna_root / "noisy_pneumonia" / "rsna_kaggle" / MAPPING) in message


def test_noisy_cxr_without_the_reader_table_names_the_file_and_where_to_get_it(rsna_root):
    (rsna_root / "noisy_pneumonia" / "rsna_kaggle" / PROBS).unlink()
    with pytest.raises(DataNotFoundError, match=rf"{PROBS}(.|\n)*RSNA/Kaggle(.|\n)*kaggle.com"):
        load("noisy_cxr", rsna_root)


@pytest.mark.parametrize("filename", [LABELS, CLASS_INFO])
def test_noisy_cxr_without_an_rsna_table_names_the_file_and_the_challenge_pages(rsna_root, filename):
    (rsna_root / "noisy_pneumonia" / "rsna_kaggle" / filename).unlink()
    with pytest.raises(DataNotFoundError) as err:
        load("noisy_cxr", rsna_root)
    assert filename in str(err.value)
    assert "https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data" in str(err.value)
    assert "https://www.rsna.org/rsnai/ai-image-challenge/rsna-pneumonia-detection-challenge-2018" in str(
        err.value
    )


def test_real_rsna_root_lacks_the_mapping_and_says_so(data_root):
    with pytest.raises(DataNotFoundError, match=MAPPING):
        load("noisy_cxr", data_root)


def test_noisy_cxr_without_images_loads_labels_but_image_loading_lists_where_it_looked(rsna_root):
    images = rsna_root / "noisy_pneumonia" / "rsna_kaggle" / "stage_2_train_images"
    for f in images.iterdir():
        f.unlink()
    images.rmdir()
    task = load("noisy_cxr", rsna_root)
    assert task.n_samples == 25
    with pytest.raises(DataNotFoundError) as err:
        task.load_images()
    for where in ("noisy_pneumonia/rsna_kaggle/stage_2_train_images", "rsna/stage_2_train_images"):
        assert str(rsna_root / where) in str(err.value)
    assert "kaggle competitions download -c rsna-pneumonia-detection-challenge" in str(err.value)


def corrupt_one_training_image(root: Path) -> str:
    task = load("noisy_cxr", root)
    victim = next(pid for pid in task.sample_ids if pid != "amb-pos")
    (root / "noisy_pneumonia" / "rsna_kaggle" / "stage_2_train_images" / f"{victim}.png").write_bytes(
        b"not a png"
    )
    return str(victim)


def test_an_unreadable_image_is_an_error_naming_the_file(rsna_root):
    victim = corrupt_one_training_image(rsna_root)
    task = load(f"noisy_cxr[image_size={SIZE}]", rsna_root)
    with pytest.raises(ImageReadError, match=f"{victim}.png"):
        task.load_images()


def test_skip_unreadable_drops_the_sample_and_lists_the_file_and_reason(rsna_root):
    victim = corrupt_one_training_image(rsna_root)
    task = load(f"noisy_cxr[image_size={SIZE},skip_unreadable=True]", rsna_root)
    assert task.n_samples == 24 and victim not in task.sample_ids
    [skipped] = task.info["skipped_inputs"]
    assert skipped["sample_id"] == victim
    assert skipped["file"].endswith(f"stage_2_train_images/{victim}.png")
    assert "not an image" in skipped["reason"]
    images = task.load_images()
    assert [int(im[1, 1]) for im in images] == [CODES[pid] for pid in task.sample_ids]


def test_skip_unreadable_also_drops_samples_without_an_image_file(rsna_root):
    task = load("noisy_cxr", rsna_root)
    missing = str(task.sample_ids[0])
    (rsna_root / "noisy_pneumonia" / "rsna_kaggle" / "stage_2_train_images" / f"{missing}.png").unlink()
    with pytest.raises(DataNotFoundError, match=missing):
        task.load_images()
    task = load("noisy_cxr[skip_unreadable=True]", rsna_root)
    assert missing not in task.sample_ids
    assert task.info["skipped_inputs"][0]["reason"].startswith("not found")


# -------------------------------------------------------------------------------- nih_airspace


def test_nih_airspace_on_the_real_labels(data_root):
    task = load("nih_airspace", data_root)
    assert task.n_samples == 4_376
    assert task.initially_mislabelled == 286 + 1_258
    assert task.noise_rate == pytest.approx(0.3528, abs=5e-5)
    assert task.budget_multiplier == 2.5 and task.budget == round(2.5 * 1_544)
    assert task.info["noisy_vs_true"]["noisy=airspace_opacity,true=negative"] == 286
    assert task.info["noisy_vs_true"]["noisy=negative,true=airspace_opacity"] == 1_258
    assert not task.ambiguous.any()  # one-hot truth
    assert task.sample_ids[0] == "00000013_008.png"


def test_nih_airspace_without_images_lists_where_it_looked(data_root):
    task = load("nih_airspace", data_root)
    with pytest.raises(DataNotFoundError) as err:
        task.load_images()
    for where in ("noisy_pneumonia/nih/images", "noisy_pneumonia/nih/images*/images", "nih/images"):
        assert str(data_root / where) in str(err.value)
    assert "nihcc.app.box.com" in str(err.value)


def test_nih_airspace_without_the_google_labels_names_the_file(tmp_path):
    with pytest.raises(DataNotFoundError, match=rf"{GOOGLE}(.|\n)*Majkowska"):
        load("nih_airspace", tmp_path)


@pytest.fixture
def nih_root(tmp_path: Path) -> Path:
    """Google labels without Finding Labels (so Data_Entry is joined) and NIH's image folders."""
    root = tmp_path / "root"
    folder = root / "nih"
    folder.mkdir(parents=True)
    names = [f"0000000{k}_000.png" for k in range(4)]
    pd.DataFrame({"Image Index": names, "Airspace opacity": ["YES", "NO", "NO", "YES"]}).to_csv(
        folder / GOOGLE, index=False
    )
    pd.DataFrame(
        {"Image Index": names, "Finding Labels": ["Pneumonia", "Infiltration", "No Finding", "Mass"]}
    ).to_csv(folder / "Data_Entry_2017_v2020.csv.gz", index=False)
    for k, name in enumerate(names):
        sub = folder / f"images_00{1 + k % 2}" / "images"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture(10 + k)).save(sub / name)
    return root


def test_nih_airspace_joins_data_entry_and_reads_nih_image_folders(nih_root):
    task = load(f"nih_airspace[image_size={SIZE}]", nih_root)
    np.testing.assert_array_equal(task.noisy_labels, [1, 1, 0, 0])
    np.testing.assert_array_equal(task.true_labels, [1, 0, 0, 1])
    assert task.noise_rate == 0.5
    assert [int(im[1, 1]) for im in task.load_images()] == [10, 11, 12, 13]


def test_nih_airspace_skip_unreadable_lists_the_file(nih_root):
    bad = nih_root / "nih" / "images_002" / "images" / "00000001_000.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    task = load(f"nih_airspace[image_size={SIZE},skip_unreadable=True]", nih_root)
    assert list(task.sample_ids) == ["00000000_000.png", "00000002_000.png", "00000003_000.png"]
    assert task.info["skipped_inputs"][0]["file"] == str(bad)
    assert [int(im[1, 1]) for im in task.load_images()] == [10, 12, 13]


def test_mapping_json_of_the_synthetic_root_is_in_the_real_format(rsna_root):
    entries = json.loads((rsna_root / "noisy_pneumonia" / "rsna_kaggle" / MAPPING).read_text())
    assert {"subset_img_id", "orig_labels", "StudyInstanceUID", "img_id"} <= set(entries[0])


def test_unreadable_images_skipped_by_option_are_listed_with_the_run(rsna_root, tmp_path):
    """With skip_unreadable, a corrupt image is dropped, and the run lists it in its results."""
    from benchmark.cli import main

    folder = rsna_root / "noisy_pneumonia" / "rsna_kaggle" / "stage_2_train_images"
    train_ids = set(load("noisy_cxr", rsna_root).sample_ids)
    bad = next(p for p in sorted(folder.glob("*.png")) if p.stem in train_ids)
    bad.write_bytes(b"not an image")
    out = tmp_path / "res"
    args = [
        "suite",
        "--out",
        str(out),
        "--data-root",
        str(rsna_root),
        "--datasets",
        "noisy_cxr[skip_unreadable=True]",
        "--learners",
        "truth",
        "--strategies",
        "random",
        "oracle",
        "--seeds",
        "0",
        "--no-progress",
    ]
    assert main(args) == 0
    listed = pd.read_csv(out / "skipped_inputs.csv")
    assert list(listed["file"]) == [str(bad)]
    runs = pd.read_parquet(out / "runs.parquet")
    assert set(runs["skipped_inputs"]) == {1}


# ------------------------------------------------------------------- simulations end to end


def test_noisy_cxr_runs_every_strategy_from_supplied_posteriors(rsna_root, tmp_path):
    """--posteriors replaces the learner: every strategy runs, and the oracle fixes every label."""
    from benchmark.cli import main
    from benchmark.run.suite import expand

    task = load("noisy_cxr", rsna_root)
    truth = tmp_path / "truth.npy"
    np.save(truth, task.true_dist.astype(np.float32))
    out = tmp_path / "res"
    strategies = [s for s in expand("strategy")[0] if s != "bald"]  # bald needs T x N x C
    args = [
        "run",
        "--dataset",
        "noisy_cxr",
        "--posteriors",
        str(truth),
        "--data-root",
        str(rsna_root),
        "--seeds",
        "0-2",
        "--out",
        str(out),
        "--no-progress",
    ]
    for spec in strategies:
        args += ["--strategy", spec]
    assert main(args) == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert set(runs["status"]) == {"ok"} and set(runs["strategy"]) == set(strategies)
    assert (runs.loc[runs["strategy"] == "oracle", "final_accuracy"] == 100.0).all()
    assert "noisy_cxr" in (out / "leaderboard.md").read_text()


def test_nih_airspace_oracle_ends_at_100_percent_with_true_distributions(data_root, tmp_path):
    from benchmark.cli import main

    out = tmp_path / "res"
    args = [
        "suite",
        "--out",
        str(out),
        "--data-root",
        str(data_root),
        "--datasets",
        "nih_airspace",
        "--learners",
        "truth",
        "--strategies",
        "oracle",
        "random",
        "loss",
        "--seeds",
        "0-1",
        "--no-progress",
    ]
    assert main(args) == 0
    runs = pd.read_parquet(out / "runs.parquet").set_index(["strategy", "seed"])
    assert runs.loc[("oracle", 0), "final_accuracy"] == 100.0
    assert runs.loc[("oracle", 0), "n_samples"] == 4376
    assert runs.loc[("loss", 0), "auc"] > runs.loc[("random", 0), "auc"]


def test_chest_xray_datasets_without_files_are_skipped_and_the_suite_exits_0(tmp_path, capsys):
    from benchmark.cli import main

    out = tmp_path / "res"
    args = [
        "suite",
        "--out",
        str(out),
        "--data-root",
        str(tmp_path / "empty"),
        "--datasets",
        "noisy_cxr",
        "nih_airspace",
        "--strategies",
        "random",
        "--seeds",
        "0",
        "--no-progress",
    ]
    assert main(args) == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert set(runs["status"]) == {"skipped"}
    assert set(runs["learner"]) == {"resnet50", "truth"}
    text = capsys.readouterr().out
    assert "stage_2_train_labels.csv" in text and "google2019_nih-chest-xray-labels.csv.gz" in text
