"""Reading radiographs: DICOM pixel semantics, PNG/JPEG, resizing, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from benchmark.radiographs import ImageReadError, read_radiograph

RSNA_DICOM = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
NIH_PNG = "00000001_000.png"


def write_dicom(
    path: Path,
    stored: np.ndarray,
    *,
    bits_allocated: int = 16,
    bits_stored: int | None = None,
    photometric: str = "MONOCHROME2",
    signed: bool = False,
    pixel_data: bool = True,
    **elements: object,
) -> Path:
    """A minimal single-frame Secondary Capture file holding ``stored`` as native pixel data."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = stored.shape[:2]
    ds.SamplesPerPixel = 3 if stored.ndim == 3 else 1
    if stored.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored or bits_allocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = int(signed)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    if pixel_data:
        dtype = {8: "u1", 16: "u2"}[bits_allocated]
        ds.PixelData = np.ascontiguousarray(stored).astype(("<i" if signed else "<u") + dtype[1]).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def gradient(max_value: int, shape: tuple[int, int] = (16, 32)) -> np.ndarray:
    """Values rising left to right from 0 to ``max_value``, the same in every row."""
    row = np.round(np.linspace(0, max_value, shape[1])).astype(np.int64)
    return np.tile(row, (shape[0], 1))


def assert_maps_gradient_to_full_range(image: np.ndarray, shape: tuple[int, int]) -> None:
    assert image.dtype == np.uint8 and image.shape == shape
    assert image.min() == 0 and image.max() == 255
    assert np.all(np.diff(image.astype(int), axis=1) > 0)
    assert np.all(image == image[0])


# ----------------------------------------------------------------------------- DICOM values


@pytest.mark.parametrize(
    ("bits_allocated", "bits_stored"), [(8, 8), (16, 12), (16, 16)], ids=["8bit", "12bit", "16bit"]
)
def test_bit_depths_map_a_gradient_onto_0_to_255(
    tmp_path: Path, bits_allocated: int, bits_stored: int
) -> None:
    # 32 columns over the whole stored range: strictly increasing after scaling to 0..255.
    stored = gradient((1 << bits_stored) - 1)
    path = write_dicom(tmp_path / "g.dcm", stored, bits_allocated=bits_allocated, bits_stored=bits_stored)
    assert_maps_gradient_to_full_range(read_radiograph(path), stored.shape)


def test_bits_above_bits_stored_are_ignored(tmp_path: Path) -> None:
    stored = gradient(4095)
    clean = write_dicom(tmp_path / "clean.dcm", stored, bits_stored=12)
    # Garbage (e.g. an overlay plane) in the 4 unused high bits of the 16-bit containers.
    dirty = write_dicom(tmp_path / "dirty.dcm", stored | 0xA000, bits_stored=12)
    np.testing.assert_array_equal(read_radiograph(dirty), read_radiograph(clean))


def test_signed_12_bit_data_is_sign_extended(tmp_path: Path) -> None:
    stored = gradient(4095) - 2048  # -2048..2047
    path = write_dicom(tmp_path / "s.dcm", stored & 0x0FFF, bits_stored=12, signed=True)
    assert_maps_gradient_to_full_range(read_radiograph(path), stored.shape)


def test_monochrome1_and_monochrome2_of_the_same_picture_read_identically(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 4096, size=(20, 24))  # bright = dense
    mono2 = write_dicom(tmp_path / "m2.dcm", picture, bits_stored=12, photometric="MONOCHROME2")
    mono1 = write_dicom(tmp_path / "m1.dcm", 4095 - picture, bits_stored=12, photometric="MONOCHROME1")
    image = read_radiograph(mono2)
    np.testing.assert_array_equal(read_radiograph(mono1), image)
    # ... and bright is where the picture is dense.
    assert image.flat[np.argmax(picture)] == 255 and image.flat[np.argmin(picture)] == 0


def test_rescale_slope_and_intercept_are_applied(tmp_path: Path) -> None:
    stored = gradient(3000)
    plain = read_radiograph(write_dicom(tmp_path / "plain.dcm", stored, bits_stored=12))
    # A positive linear rescale leaves the full-range picture unchanged...
    rescaled = write_dicom(
        tmp_path / "hu.dcm", stored, bits_stored=12, RescaleSlope=2, RescaleIntercept=-1024
    )
    np.testing.assert_array_equal(read_radiograph(rescaled), plain)
    # ... while a negative slope turns it round: the rescale is not ignored.
    flipped = write_dicom(tmp_path / "neg.dcm", stored, bits_stored=12, RescaleSlope=-2, RescaleIntercept=0)
    np.testing.assert_array_equal(read_radiograph(flipped), 255 - plain)


def test_rgb_dicom_is_read_as_luminance(tmp_path: Path) -> None:
    grey = gradient(255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    path = write_dicom(tmp_path / "rgb.dcm", rgb, bits_allocated=8, photometric="RGB")
    np.testing.assert_array_equal(read_radiograph(path), grey)


def test_dicom_without_the_dcm_suffix_is_recognised(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "IM0001", gradient(255), bits_allocated=8)
    assert_maps_gradient_to_full_range(read_radiograph(path), (16, 32))


# ----------------------------------------------------------------------------- DICOM errors


def test_truncated_pixel_data_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "cut.dcm", gradient(4095), bits_stored=12)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ImageReadError, match=r"cut\.dcm.*truncated"):
        read_radiograph(path)


def test_header_cut_short_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "stub.dcm", gradient(4095), bits_stored=12)
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\xe0\x7f\x10\x00") + 6])  # inside the Pixel Data tag
    with pytest.raises(ImageReadError, match=r"stub\.dcm"):
        read_radiograph(path)


def test_dicom_without_pixel_data_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "nopix.dcm", gradient(255), pixel_data=False)
    with pytest.raises(ImageReadError, match=r"nopix\.dcm.*has no pixel data"):
        read_radiograph(path)


def test_unsupported_photometric_interpretation_is_an_error(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "pal.dcm", gradient(255), bits_allocated=8, photometric="PALETTE COLOR")
    with pytest.raises(ImageReadError, match=r"pal\.dcm.*unsupported photometric interpretation"):
        read_radiograph(path)


def test_blank_dicom_is_an_error(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "blank.dcm", np.full((8, 8), 100))
    with pytest.raises(ImageReadError, match=r"blank\.dcm.*blank"):
        read_radiograph(path)


def test_empty_dicom_is_an_error(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "empty.dcm", np.zeros((0, 0)))
    with pytest.raises(ImageReadError, match=r"empty\.dcm.*empty image"):
        read_radiograph(path)


def test_a_file_that_is_not_dicom_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.dcm"
    path.write_text("not a DICOM file at all, just some text " * 10)
    with pytest.raises(ImageReadError, match=r"notes\.dcm.*not a DICOM file"):
        read_radiograph(path)


def test_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"absent\.png.*does not exist"):
        read_radiograph(tmp_path / "absent.png")


# ----------------------------------------------------------------------------- PNG, JPEG, resize


def test_8_bit_png_is_returned_as_stored(tmp_path: Path) -> None:
    picture = np.random.default_rng(1).integers(0, 256, size=(12, 20)).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "x.png")
    np.testing.assert_array_equal(read_radiograph(tmp_path / "x.png"), picture)


def test_rgba_png_is_read_as_greyscale(tmp_path: Path) -> None:
    grey = gradient(255).astype(np.uint8)
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_radiograph(tmp_path / "rgba.png"), grey)


def test_16_bit_png_maps_its_range_onto_0_to_255(tmp_path: Path) -> None:
    Image.fromarray(gradient(4095).astype(np.uint16)).save(tmp_path / "deep.png")
    assert_maps_gradient_to_full_range(read_radiograph(tmp_path / "deep.png"), (16, 32))


def test_truncated_png_is_an_error_naming_the_file(tmp_path: Path) -> None:
    picture = np.random.default_rng(2).integers(0, 256, size=(64, 64)).astype(np.uint8)
    Image.fromarray(picture).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png"):
        read_radiograph(tmp_path / "cut.png")


def test_resize_gives_a_square_image_of_the_requested_size(tmp_path: Path) -> None:
    Image.fromarray(gradient(255, (40, 60)).astype(np.uint8)).save(tmp_path / "wide.png")
    image = read_radiograph(tmp_path / "wide.png", size=24)
    assert image.shape == (24, 24) and image.dtype == np.uint8
    assert np.all(np.diff(image.astype(int), axis=1) >= 0) and image[0, -1] > image[0, 0] + 200


def test_resize_rejects_a_size_that_is_not_a_positive_integer(tmp_path: Path) -> None:
    Image.fromarray(gradient(255).astype(np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(ValueError, match="size"):
        read_radiograph(tmp_path / "x.png", size=0)


# ----------------------------------------------------------------------------- real radiographs


def test_real_rsna_style_dicom(data_root: Path) -> None:
    path = data_root / "noisy_pneumonia" / "cxr_samples" / RSNA_DICOM
    image = read_radiograph(path)  # JPEG-baseline compressed, 8-bit MONOCHROME2
    assert image.shape == (1024, 1024) and image.dtype == np.uint8
    assert image.min() == 0 and image.max() == 255 and image.std() > 20
    small = read_radiograph(path, size=256)
    assert small.shape == (256, 256)
    assert abs(float(small.mean()) - float(image.mean())) < 2


def test_real_nih_png(data_root: Path) -> None:
    path = data_root / "noisy_pneumonia" / "cxr_samples" / NIH_PNG
    image = read_radiograph(path)
    assert image.shape == (512, 512) and image.dtype == np.uint8
    assert image.std() > 20 and int(image.max()) - int(image.min()) > 200
    assert read_radiograph(path, size=224).shape == (224, 224)
