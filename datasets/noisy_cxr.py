"""NoisyCXR: the RSNA Pneumonia Detection Challenge radiographs (paper Table 3).

The truth is the label adjudicated by RSNA radiologists; the noisy label comes from the
original NIH ChestX-ray14 labels, mined from radiology reports (consolidation/infiltration
cases take the RSNA label with 10 % flipped). Ambiguous cases get 2:1 true distributions. The
26,684 patients are split 50/50 (seed 1234) into a training split (13,342 samples, about 12.7 %
noise) and an evaluation split. The rules live in :func:`_cxr_labels.build_noisy_cxr`.

Files, under ``<root>/noisy_pneumonia/rsna_kaggle/``, ``<root>/rsna/`` or ``<root>/`` of a data
root: the challenge's ``stage_2_train_labels.csv`` and ``stage_2_detailed_class_info.csv``, the
RSNA-to-NIH mapping ``pneumonia-challenge-dataset-mappings_2018.json``, the reader-confidence
table ``RSNA_pneumonia_all_probs.csv``, and the images ``stage_2_train_images/<patientId>.dcm``
(or ``.png`` exports). Only learners read the images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmark.dataroot import find_data_file, find_image_dirs
from benchmark.plugins import Dataset, Param
from benchmark.radiographs import load_radiographs, radiograph_inputs
from benchmark.task import CleaningTask

from . import _cxr_labels as cxr_labels

CLASSES = ("negative", "pneumonia")
FOLDERS = ("noisy_pneumonia/rsna_kaggle", "rsna", "")
CHALLENGE_PAGE = "https://www.rsna.org/rsnai/ai-image-challenge/rsna-pneumonia-detection-challenge-2018"
KAGGLE_DATA = "https://www.kaggle.com/c/rsna-pneumonia-detection-challenge/data"
PLACE = "Put it in <data root>/noisy_pneumonia/rsna_kaggle/, <data root>/rsna/ or <data root>/."
FILES = {
    "labels": (
        "stage_2_train_labels.csv",
        "RSNA challenge box labels",
        f"Download it from the Kaggle competition {KAGGLE_DATA}\n"
        "  (kaggle competitions download -c rsna-pneumonia-detection-challenge); see also the RSNA "
        f"challenge page {CHALLENGE_PAGE}.",
    ),
    "class_info": (
        "stage_2_detailed_class_info.csv",
        "RSNA challenge class info",
        f"Download it from the Kaggle competition {KAGGLE_DATA}\n"
        "  (kaggle competitions download -c rsna-pneumonia-detection-challenge); see also the RSNA "
        f"challenge page {CHALLENGE_PAGE}.",
    ),
    "mapping": (
        "pneumonia-challenge-dataset-mappings_2018.json",
        "RSNA-to-NIH mapping (gives each patient its original NIH labels)",
        "It was published by RSNA with the challenge: "
        "https://s3.amazonaws.com/east1.public.rsna.org/AI/2018/pneumonia-challenge-dataset-mappings_2018.json\n"
        f"  (linked from the RSNA challenge page {CHALLENGE_PAGE}).",
    ),
    "probs": (
        "RSNA_pneumonia_all_probs.csv",
        "RSNA per-box reader confidence table",
        "It was published with the challenge by RSNA/Kaggle, as an attachment to the competition's "
        "discussion forum:\n  https://storage.googleapis.com/kaggle-forum-message-attachments/844865/15542/"
        f"RSNA_pneumonia_all_probs.csv.zip (unzip it); competition: {KAGGLE_DATA}.",
    ),
}
HOW_TO_GET_IMAGES = (
    f"Download stage_2_train_images/ (26,684 DICOM files) from the Kaggle competition {KAGGLE_DATA}\n"
    "  (kaggle competitions download -c rsna-pneumonia-detection-challenge); PNG exports named "
    "<patientId>.png are accepted too."
)


class NoisyCXR(Dataset):
    name = "noisy_cxr"
    description = "NoisyCXR: RSNA pneumonia (truth) vs NIH report labels (noisy); paper Table 3"
    parameters = {
        "split": Param(["train"], choices=("train", "eval")),
        "image_size": Param([256], type=int, low=0, optional=True),  # 0 or None: as stored
        "skip_unreadable": Param([False], type=bool),
    }
    # the paper's chest X-ray learner; the true distribution as an upper bound
    learners = ("resnet50", "truth")

    def load(self, data_root: Path | None = None) -> CleaningTask:
        split = self.params["split"]
        if split not in ("train", "eval"):
            raise ValueError(f"noisy_cxr: split must be 'train' or 'eval', got {split!r}")
        size = self.params["image_size"]
        size = None if size in (None, 0) else int(size)
        files = {key: find_file(key, data_root) for key in FILES}
        rows = cxr_labels.read_rsna_rows(files["labels"], files["class_info"])
        rsna = cxr_labels.rsna_patients(rows)
        mapping = cxr_labels.read_mapping(files["mapping"])
        table = cxr_labels.build_noisy_cxr(rsna, mapping, cxr_labels.read_reader_confidence(files["probs"]))
        table = table[table["split"] == split].sort_values("split_rank").reset_index(drop=True)

        info: dict[str, Any] = {
            "source": "RSNA Pneumonia Detection Challenge 2018 (truth) vs NIH ChestX-ray14 labels (noisy)",
            "files": {key: str(path) for key, path in files.items()},
            "split": split,
            "rsna": cxr_labels.rsna_counts(rows),
            # Samples are the patients in both; the real mapping also lists the challenge's test images.
            "rsna_patients_without_mapping": int((~rsna["patientId"].isin(mapping["subset_img_id"])).sum()),
            "mapping_entries_without_rsna": int((~mapping["subset_img_id"].isin(rsna["patientId"])).sum()),
            "skipped_inputs": [],
        }
        kept, info["skipped_inputs"], load_images = radiograph_inputs(
            table["patientId"].tolist(),
            lambda ids, skip: read_images(ids, data_root, size, skip),
            skip_unreadable=bool(self.params["skip_unreadable"]),
        )
        table = table.iloc[kept].reset_index(drop=True)
        ids = table["patientId"].to_numpy(dtype=str)
        true_dist = table[["true_dist_0", "true_dist_1"]].to_numpy(dtype=np.float64)
        noisy = table["noisy_label"].to_numpy(dtype=np.int64)
        info |= cxr_labels.label_summary(table["rsna_label"].to_numpy(), noisy, CLASSES)
        info["n_ambiguous"] = int(table["ambiguous"].sum())
        info["n_flipped"] = int(table["flipped"].sum())
        info["nih_category_counts"] = {
            c: int((table["nih_category"] == c).sum()) for c in cxr_labels.NIH_CATEGORIES
        }

        return CleaningTask(
            name=self.spec,
            true_dist=true_dist,
            noisy_labels=noisy,
            class_names=CLASSES,
            budget_multiplier=2.5,
            load_images=load_images,
            sample_ids=ids,
            info=info,
        )

    def display_name(self, noise_rate: float | None = None) -> str:
        """``"NoisyCXR, RSNA pneumonia"``, the split when it is not the training one."""
        from benchmark.params import changed_params, noise_text

        parts = ["NoisyCXR, RSNA pneumonia", *changed_params(self, "split")]
        if self.params["split"] != "train":
            parts.append(f"{self.params['split']} split")
        return ", ".join(parts) + noise_text(noise_rate)


def find_file(key: str, data_root: Path | None) -> Path:
    filename, what, how = FILES[key]
    return find_data_file(
        [f"{folder}/{filename}" if folder else filename for folder in FOLDERS],
        data_root=data_root,
        what=f"{what} ({filename})",
        how_to_get=f"{how}\n{PLACE}",
    )


def read_images(
    patient_ids: list[str], data_root: Path | None, size: int | None, skip_unreadable: bool
) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    """(K, size, size) uint8 radiographs, the kept indices and the skipped files (see
    :func:`benchmark.radiographs.load_radiographs`)."""
    dirs = find_image_dirs(
        data_root,
        [f"{folder}/stage_2_train_images" if folder else "stage_2_train_images" for folder in FOLDERS],
        what="RSNA challenge images (stage_2_train_images/)",
        how_to_get=HOW_TO_GET_IMAGES,
    )
    return load_radiographs(
        patient_ids, dirs, suffixes=(".dcm", ".png"), size=size, skip_unreadable=skip_unreadable
    )
