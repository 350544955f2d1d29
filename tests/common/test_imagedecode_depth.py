"""Float and 16-bit TIFFs decode by their real value range, or get a clear ``unsupported`` status, never a
silently black image (issue 13, item 5); decode errors carry no memory addresses (item 10)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile

from common.imagedecode import DecodeError, decode_rgb, error_text, probe_size


def _tiff(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, photometric="rgb" if arr.ndim == 3 else "minisblack")
    return buf.getvalue()


def _ramp(shape=(16, 24)) -> np.ndarray:
    return np.linspace(0.0, 1.0, shape[0] * shape[1]).reshape(shape)


def test_float32_tiff_in_unit_range_is_scaled_not_black():
    ramp = _ramp().astype(np.float32)
    rgb = decode_rgb(_tiff(ramp))
    assert rgb.shape == (16, 24, 3) and rgb.dtype == np.uint8
    assert rgb.max() == 255 and rgb.mean() > 100  # was all zeros before
    np.testing.assert_array_equal(rgb[..., 0], np.round(ramp * 255).astype(np.uint8))


def test_float32_tiff_in_byte_range_keeps_its_values():
    values = (_ramp() * 250 + 3).astype(np.float32)
    rgb = decode_rgb(_tiff(values))
    np.testing.assert_array_equal(rgb[..., 1], np.round(values).astype(np.uint8))


def test_16bit_tiffs_scale_by_the_full_16bit_range():
    gray = (_ramp() * 65535).astype(np.uint16)
    np.testing.assert_allclose(decode_rgb(_tiff(gray))[..., 0], gray / 257.0, atol=1)
    dark = (_ramp() * 200).astype(np.uint16)  # a dark 16-bit frame stays dark, not stretched to 0..200/255
    assert decode_rgb(_tiff(dark)).max() <= 1
    colour = np.dstack([(_ramp() * 65535).astype(np.uint16)] * 3)
    out = decode_rgb(_tiff(colour))
    np.testing.assert_allclose(out.astype(float), colour / 257.0, atol=1)


@pytest.mark.parametrize("name, arr, reason", [
    ("float RGB", np.dstack([_ramp()] * 3).astype(np.float32), "sample format"),
    ("float64 grey", _ramp(), "sample format"),
    ("HDR float", (_ramp() * 1000).astype(np.float32), "outside 0..255"),
    ("negative float", (_ramp() - 0.5).astype(np.float32), "outside 0..255"),
    ("NaN float", np.where(_ramp() > 0.5, np.nan, 0.2).astype(np.float32), "NaN"),
])
def test_unreadable_or_out_of_range_tiffs_are_unsupported(name, arr, reason):
    data = _tiff(arr)
    with pytest.raises(DecodeError) as info:
        decode_rgb(data)
    assert info.value.status == "unsupported", name
    assert reason in info.value.reason and "0x" not in info.value.reason
    if arr.ndim == 3 or arr.dtype == np.float64:  # the header probe says the same
        with pytest.raises(DecodeError, match="unsupported"):
            probe_size(data)


def test_decode_errors_are_free_of_memory_addresses():
    with pytest.raises(DecodeError) as info:
        probe_size(b"\x00\x01garbage" * 8)
    assert "0x" not in info.value.reason and "object at" not in info.value.reason
    assert error_text(ValueError("cannot identify <_io.BytesIO object at 0x7f2f08e1fb00>")) == \
        "ValueError: cannot identify <_io.BytesIO>"
