"""The worker's memory budget: pixels decoded per image and cells one field may yield."""

from cases.analysis.services import images_analyse
from cases.models import Image
from tests.cases.test_analysis import field_png, upload_field


def test_a_field_with_more_cells_than_field_max_cells_fails_with_the_reason(
    case, clinician, active_model, active_detector, settings
):
    settings.FIELD_MAX_CELLS = 3
    field = upload_field(case, clinician, field_png())  # six cells
    images_analyse(image_ids=[field.pk])
    field.refresh_from_db()
    assert field.status == Image.Status.FAILED
    assert "found 6 cells" in field.error and "FIELD_MAX_CELLS" in field.error
    assert not field.cells.exists()


def test_a_field_over_the_workers_pixel_budget_fails_before_decoding(
    case, clinician, active_model, active_detector, settings, monkeypatch
):
    import classifier.preprocess

    decoded = []
    real_decode = classifier.preprocess.decode_image
    monkeypatch.setattr(
        classifier.preprocess, "decode_image", lambda data: decoded.append(1) or real_decode(data)
    )
    field = upload_field(case, clinician, field_png())
    settings.ANALYSIS_MAX_PIXELS = 100_000  # lowered after the upload
    images_analyse(image_ids=[field.pk])
    field.refresh_from_db()
    assert field.status == Image.Status.FAILED and "ANALYSIS_MAX_PIXELS" in field.error
    assert decoded == []
