"""NIH ChestX-ray14 images relabelled by radiologists (Majkowska et al., Radiology 2019).

4,376 NIH images whose "Airspace opacity" was adjudicated by radiologists (Google's expert
labels) are the truth; the noisy label is the NIH report label, positive when the NLP-mined
``Finding Labels`` include Pneumonia, Consolidation or Infiltration. The two disagree on 35.3 %
of the images. A real noisy-versus-adjudicated pair, but not the paper's NoisyCXR; the truth is
one-hot. The rules live in :func:`_cxr_labels.build_nih_airspace`.

Files, under ``<root>/noisy_pneumonia/nih/``, ``<root>/nih/`` or ``<root>/`` of a data root:
``google2019_nih-chest-xray-labels.csv.gz`` and, only if that lacks ``Finding Labels``,
``Data_Entry_2017_v2020.csv.gz``; the images ``images/<Image Index>`` (or, as NIH ships them,
``images_001/images/...`` to ``images_012/images/...``). Only learners read the images.
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

CLASSES = ("negative", "airspace_opacity")
FOLDERS = ("noisy_pneumonia/nih", "nih", "")
PLACE = "Put it in <data root>/noisy_pneumonia/nih/, <data root>/nih/ or <data root>/."
HOW_TO_GET_LABELS = (
    "Google's expert labels for NIH ChestX-ray14 (Majkowska et al. 2019) are published at\n"
    "  https://cloud.google.com/healthcare/docs/resources/public-datasets/nih-chest "
    "(four_findings_expert_labels);\n  this file, with the NIH columns joined, is "
    "torchxrayvision/data/google2019_nih-chest-xray-labels.csv.gz in https://github.com/mlmed/torchxrayvision."
)
HOW_TO_GET_DATA_ENTRY = (
    "Download Data_Entry_2017_v2020.csv from the NIH Clinical Center, https://nihcc.app.box.com/v/ChestXray-NIHCC"
    "\n  (gzip it, or use torchxrayvision/data/Data_Entry_2017_v2020.csv.gz from https://github.com/mlmed/torchxrayvision)."
)
HOW_TO_GET_IMAGES = (
    "Download the NIH ChestX-ray14 images (images_001.tar.gz .. images_012.tar.gz) from\n"
    "  https://nihcc.app.box.com/v/ChestXray-NIHCC, or https://www.kaggle.com/datasets/nih-chest-xrays/data;\n"
    "  extract them to images/<Image Index>.png or keep NIH's images_0NN/images/ folders."
)
IMAGE_FOLDERS = [
    f"{folder}/{sub}" if folder else sub for folder in FOLDERS[:2] for sub in ("images", "images*/images")
]


class NIHAirspace(Dataset):
    name = "nih_airspace"
    description = (
        "NIH ChestX-ray14 relabelled by radiologists (Google 2019): airspace opacity vs NIH report labels"
    )
    parameters = {
        "image_size": Param([256], type=int, low=0, optional=True),  # 0 or None: as stored
        "skip_unreadable": Param([False], type=bool),
    }
    # the paper's chest X-ray learner; the true distribution as an upper bound
    learners = ("resnet50", "truth")

    def load(self, data_root: Path | None = None) -> CleaningTask:
        size = self.params["image_size"]
        size = None if size in (None, 0) else int(size)
        google_path = find_file("google2019_nih-chest-xray-labels.csv.gz", data_root, HOW_TO_GET_LABELS)
        google = cxr_labels.read_table(
            google_path, ["Image Index", "Airspace opacity"], id_columns=["Image Index", "Airspace opacity"]
        )
        files = {"google": str(google_path)}
        data_entry = None
        if "Finding Labels" not in google.columns:
            entry_path = find_file("Data_Entry_2017_v2020.csv.gz", data_root, HOW_TO_GET_DATA_ENTRY)
            data_entry = cxr_labels.read_table(
                entry_path, ["Image Index", "Finding Labels"], id_columns=["Image Index"]
            )
            files["data_entry"] = str(entry_path)
        table = cxr_labels.build_nih_airspace(google, data_entry)

        info: dict[str, Any] = {
            "source": "NIH ChestX-ray14 report labels (noisy) vs Google 2019 adjudicated airspace opacity",
            "files": files,
            "skipped_inputs": [],
        }
        kept, info["skipped_inputs"], load_images = radiograph_inputs(
            table["image_id"].tolist(),
            lambda ids, skip: read_images(ids, data_root, size, skip),
            skip_unreadable=bool(self.params["skip_unreadable"]),
        )
        table = table.iloc[kept].reset_index(drop=True)
        ids = table["image_id"].to_numpy(dtype=str)
        true = table["true_label"].to_numpy(dtype=np.int64)
        noisy = table["noisy_label"].to_numpy(dtype=np.int64)
        info |= cxr_labels.label_summary(true, noisy, CLASSES)

        return CleaningTask(
            name=self.spec,
            true_dist=np.eye(len(CLASSES))[true],
            noisy_labels=noisy,
            class_names=CLASSES,
            budget_multiplier=2.5,
            load_images=load_images,
            sample_ids=ids,
            info=info,
        )

    def display_name(self, noise_rate: float | None = None) -> str:
        """``"NIH airspace opacity (35.3 % noise)"``, with any parameter off its default."""
        from benchmark.params import changed_params, noise_text

        return ", ".join(["NIH airspace opacity", *changed_params(self)]) + noise_text(noise_rate)


def find_file(filename: str, data_root: Path | None, how_to_get: str) -> Path:
    return find_data_file(
        [f"{folder}/{filename}" if folder else filename for folder in FOLDERS],
        data_root=data_root,
        what=filename,
        how_to_get=f"{how_to_get}\n{PLACE}",
    )


def read_images(
    image_ids: list[str], data_root: Path | None, size: int | None, skip_unreadable: bool
) -> tuple[np.ndarray, np.ndarray, list[dict[str, str]]]:
    """(K, size, size) uint8 radiographs, the kept indices and the skipped files (see
    :func:`benchmark.radiographs.load_radiographs`)."""
    dirs = find_image_dirs(
        data_root, IMAGE_FOLDERS, what="NIH ChestX-ray14 images", how_to_get=HOW_TO_GET_IMAGES
    )
    return load_radiographs(image_ids, dirs, size=size, skip_unreadable=skip_unreadable)
