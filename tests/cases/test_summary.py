"""The case summary helper: Wilson interval against published values, counts and the call rule."""

import pytest

from cases.models import Image, Prediction
from cases.summary import CALL_RULE, case_summary, is_near_threshold, wilson_interval


@pytest.mark.parametrize(
    "k, n, low, high",
    [
        # Reference values (z = 1.96), e.g. Newcombe 1998 Table I and any Wilson calculator.
        (0, 10, 0.0, 0.2775),
        (1, 10, 0.0179, 0.4042),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),
        (0, 1000, 0.0, 0.0038),
    ],
)
def test_wilson_interval_matches_published_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=5e-5)
    assert hi == pytest.approx(high, abs=5e-5)


def test_wilson_interval_is_symmetric_and_contains_the_estimate():
    lo, hi = wilson_interval(3, 40)
    mirror_lo, mirror_hi = wilson_interval(37, 40)
    assert lo == pytest.approx(1 - mirror_hi) and hi == pytest.approx(1 - mirror_lo)
    assert lo < 3 / 40 < hi


def test_wilson_interval_of_nothing_is_none_and_bad_counts_are_refused():
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def image(status=Image.Status.DONE, p=None, quality_ok=True, threshold=0.5) -> Image:
    img = Image(status=status, kind="cell", width=48, height=48)
    if p is not None:
        label = "parasitized" if p >= threshold else "uninfected"
        img.prediction = Prediction(
            probability=p, label=label, threshold=threshold, quality_ok=quality_ok
        )
    return img


def test_one_parasitized_cell_makes_the_suggested_call_positive():
    images = [image(p=0.95), image(p=0.1), image(p=0.2), image(p=0.05)]
    summary = case_summary(images, margin=0.15)
    assert summary["parasitized"] == 1 and summary["uninfected"] == 3 and summary["counted"] == 4
    assert summary["parasitized_fraction"] == pytest.approx(0.25)
    assert summary["ci95"] == pytest.approx(list(wilson_interval(1, 4)))
    assert summary["call"] == "positive"
    assert summary["rule"] == CALL_RULE and "confirmed by a reviewer" in CALL_RULE


def test_quality_flagged_images_are_kept_out_of_the_counts():
    images = [image(p=0.99, quality_ok=False), image(p=0.1), image(p=0.3)]
    summary = case_summary(images, margin=0.15)
    assert summary["quality_flagged"] == 1
    assert summary["parasitized"] == 0 and summary["counted"] == 2
    assert summary["call"] == "negative"


def test_near_threshold_uses_the_predictions_own_threshold():
    images = [image(p=0.62, threshold=0.7), image(p=0.9, threshold=0.7), image(p=0.45)]
    summary = case_summary(images, margin=0.1)
    assert summary["near_threshold"] == 2  # |0.62-0.7| and |0.45-0.5| are below 0.1
    assert not is_near_threshold(images[1].prediction, 0.1)


def test_the_call_waits_while_images_are_queued_unless_already_positive():
    queued = image(status=Image.Status.QUEUED)
    assert case_summary([queued, image(p=0.1)], margin=0.15)["call"] == "pending"
    assert case_summary([queued, image(p=0.9)], margin=0.15)["call"] == "positive"
    assert case_summary([], margin=0.15)["call"] == "none"
    nothing_counted = case_summary([image(p=0.9, quality_ok=False)], margin=0.15)
    assert nothing_counted["call"] == "none" and nothing_counted["ci95"] is None
