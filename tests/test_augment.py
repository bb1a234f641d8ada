"""Each waveform augmentation keeps the clip's length, rate and finiteness, and does what it says."""

import numpy as np
import pytest

from ser_model.data.augment import (CODECS, AugmentationSettings, Augmenter, babble, change_level, change_speed, crop,
                               encode_decode, mix_at_snr, narrow_band, reverberate, synthetic_room_response)

from .conftest import speechlike

RATE = 16_000


def spectrum_above(waveform, hz):
    power = np.abs(np.fft.rfft(waveform)) ** 2
    return power[np.fft.rfftfreq(len(waveform), 1 / RATE) > hz].sum() / power.sum()


@pytest.fixture
def clip():
    return speechlike(1.5, seed=3)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_a_codec_round_trip_keeps_length_and_changes_the_samples(clip, codec):
    coded = encode_decode(clip, RATE, codec, np.random.default_rng(0))
    assert coded.shape == clip.shape and coded.dtype == np.float32 and np.isfinite(coded).all()
    assert not np.allclose(coded, clip, atol=1e-4)  # lossy
    assert np.corrcoef(coded, clip)[0, 1] > 0.5  # still the same sound, not silence or noise


@pytest.mark.parametrize("augment", ["narrow_band", "reverberate", "babble", "level", "noise"])
def test_room_and_channel_augmentations_keep_length_and_finiteness(clip, augment):
    rng = np.random.default_rng(1)
    out = {
        "narrow_band": lambda: narrow_band(clip, RATE, rng),
        "reverberate": lambda: reverberate(clip, RATE, 0.6, rng),
        "babble": lambda: mix_at_snr(clip, babble(len(clip), [speechlike(0.4, seed=s) for s in range(4)], rng), 10),
        "level": lambda: change_level(clip, -30.0),
        "noise": lambda: mix_at_snr(clip, rng.standard_normal(len(clip)).astype(np.float32), 20),
    }[augment]()
    assert out.shape == clip.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert not np.array_equal(out, clip)


def test_narrow_band_removes_what_lies_above_the_telephone_band(clip):
    rng = np.random.default_rng(0)
    outputs = [narrow_band(clip, RATE, rng) for _ in range(6)]
    assert spectrum_above(clip, 6_500) > 1e-4
    assert all(spectrum_above(out, 6_500) < 1e-3 * spectrum_above(clip, 6_500) for out in outputs)


def test_mix_at_snr_gives_the_asked_ratio(clip):
    noise = np.random.default_rng(0).standard_normal(len(clip)).astype(np.float32)
    mixed = mix_at_snr(clip, noise, 10.0)
    snr = 10 * np.log10(np.mean(clip ** 2) / np.mean((mixed - clip) ** 2))
    assert snr == pytest.approx(10.0, abs=0.01)


def test_room_response_decays_by_60_db_over_rt60():
    rt60 = 0.5
    response = synthetic_room_response(RATE, rt60, np.random.default_rng(0))
    assert response[0] == 1.0 and len(response) == int(rt60 * RATE)
    early = np.mean(response[int(0.005 * RATE):int(0.055 * RATE)] ** 2)
    late = np.mean(response[int(0.44 * RATE):int(0.49 * RATE)] ** 2)
    # The envelope falls 60 dB in rt60 s: 52.8 dB between the centres of these two 50 ms stretches.
    assert 10 * np.log10(early / late) == pytest.approx(60 * 0.44 / rt60, abs=3.0)


def test_level_change_scales_and_quantises_to_16_bit(clip):
    quiet = change_level(clip, -30.0)
    assert np.abs(quiet).max() == pytest.approx(np.abs(clip).max() * 10 ** (-30 / 20), abs=1 / 32767)
    assert np.allclose(quiet * 32767, np.round(quiet * 32767), atol=1e-3)


def test_speed_and_crop_change_length_as_asked(clip):
    assert len(change_speed(clip, RATE, 1.25)) == pytest.approx(len(clip) / 1.25, abs=2)
    rng = np.random.default_rng(0)
    piece = crop(clip, 8000, rng)
    assert len(piece) == 8000 and any(np.array_equal(piece, clip[s:s + 8000]) for s in range(len(clip) - 7999))
    assert crop(clip[:100], 8000, rng).shape == (100,)


def test_the_augmenter_crops_to_the_window_and_is_reproducible(clip):
    settings = AugmentationSettings(window=16_000, sampling_rate=RATE, speed_probability=1.0, reverb_probability=1.0,
                                    babble_probability=1.0, noise_probability=1.0, narrow_band_probability=1.0,
                                    level_probability=1.0)
    pool = [speechlike(0.5, seed=s) for s in range(5)]
    augment = Augmenter(settings, pool)
    first = [augment(clip, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(first[0], first[1])  # the same generator state, the same draws
    assert not np.array_equal(first[0], augment(clip, np.random.default_rng(8)))
    assert len(first[0]) <= 16_000 and np.isfinite(first[0]).all() and first[0].dtype == np.float32
    nothing = AugmentationSettings(window=16_000, sampling_rate=RATE, speed_probability=0.0, noise_probability=0.0)
    assert np.array_equal(Augmenter(nothing, pool)(clip[:12_000], np.random.default_rng(0)), clip[:12_000])
