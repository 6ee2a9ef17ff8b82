"""The review workflow's services: claim, decide, confirm in bulk, sign off, reopen, send back."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError

from cases.intake import services
from cases.models import (
    AuditEvent,
    Case,
    Notification,
    Prediction,
    ReportExport,
    Review,
    SignOff,
)
from cases.review import services as reviews
from cases.review.selectors import (
    case_diagnosis_history,
    case_review_counts,
    review_queue,
    review_queue_new_count,
)
from cases.summary import wilson_interval
from tests.cases.review_helpers import add_cells, decide_cells, second_reviewer
from tests.conftest import make_user

P, U = Prediction.Label.PARASITIZED, Prediction.Label.UNINFECTED


@pytest.fixture
def ready(case, clinician):
    """Case with 4 cells: clear positive, clear negative, near threshold, quality-flagged; 1 failed."""
    add_cells(
        case, clinician, [0.95, 0.05, 0.55, 0.02], quality_ok=[True, True, True, False], failed=1
    )
    return case


@pytest.fixture
def claimed(ready, reviewer):
    return reviews.review_claim(case=ready, by=reviewer)


def cells(case):
    return list(case.images.filter(prediction__isnull=False).order_by("id"))


def decide_all(case, reviewer, *, override_first: bool = False):
    first = cells(case)[:1]
    decide_cells(
        case,
        reviewer,
        override=lambda image: override_first and image in first,
        reason_code="stain_debris",
        reason_text="Precipitate on the cell",
    )


def events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


# --- Claiming -------------------------------------------------------------------------------


def test_claim_assigns_the_case_and_audits_it(claimed, reviewer):
    assert claimed.assigned_reviewer == reviewer
    assert claimed.claimed_at is not None
    (event,) = events("case.claimed")
    assert event.before["assigned_reviewer"] is None
    assert event.after["assigned_reviewer"] == reviewer.pk
    assert event.case_id == claimed.pk


def test_a_second_claim_fails_with_a_clear_message(claimed, site):
    with pytest.raises(reviews.ClaimConflict, match="rev claimed this case"):
        reviews.review_claim(case=claimed, by=second_reviewer(site))
    assert len(events("case.claimed")) == 1


def test_claiming_again_is_harmless_for_the_holder(claimed, reviewer):
    again = reviews.review_claim(case=claimed, by=reviewer)
    assert again.assigned_reviewer == reviewer
    assert len(events("case.claimed")) == 1


def test_only_a_case_awaiting_review_can_be_claimed(case, reviewer):
    with pytest.raises(ValidationError, match="awaiting review"):
        reviews.review_claim(case=case, by=reviewer)


def test_a_clinician_cannot_claim_or_review(ready, clinician):
    with pytest.raises(PermissionDenied):
        reviews.review_claim(case=ready, by=clinician)
    with pytest.raises(PermissionDenied):
        reviews.review_submit(image=cells(ready)[0], by=clinician, decision="confirm")


def test_a_reviewer_of_another_site_cannot_claim(ready, other_site):
    stranger = make_user("rev-other", "reviewer", [other_site])
    with pytest.raises(PermissionDenied):
        reviews.review_claim(case=ready, by=stranger)


def test_the_holder_or_an_admin_can_release_a_claim(claimed, reviewer, lab_admin, site):
    with pytest.raises(reviews.ClaimConflict):
        reviews.review_release(case=claimed, by=second_reviewer(site))
    released = reviews.review_release(case=claimed, by=lab_admin)
    assert released.assigned_reviewer is None
    assert events("case.released")[0].before["assigned_reviewer"] == reviewer.pk


# --- Four-eyes rule -------------------------------------------------------------------------


@pytest.fixture
def self_uploaded(site, patient):
    """A case created and uploaded by a user who is both clinician and reviewer."""
    both = make_user("both", "reviewer", [site])
    both.groups.add(Group.objects.get_or_create(name="clinician")[0])
    case = services.case_create(patient=patient, by=both)
    add_cells(case, both, [0.9, 0.1])
    return case, both


def test_four_eyes_rule_bars_the_uploader(self_uploaded):
    case, both = self_uploaded
    with pytest.raises(PermissionDenied, match="Four-eyes"):
        reviews.review_claim(case=case, by=both)


def test_four_eyes_rule_can_be_switched_off(self_uploaded, settings):
    settings.REVIEW_FOUR_EYES = False
    case, both = self_uploaded
    reviews.review_claim(case=case, by=both)
    decide_all(case, both)
    signed = reviews.case_sign_off(case=case, by=both, diagnosis="positive")
    assert signed.status == Case.Status.SIGNED_OFF


def test_four_eyes_counts_images_uploaded_into_someone_elses_case(ready, reviewer):
    add_cells(ready, reviewer, [0.3])
    with pytest.raises(PermissionDenied, match="Four-eyes"):
        reviews.review_claim(case=ready, by=reviewer)


@pytest.fixture
def uploaded_by_reviewer(ready, site):
    """A case the clinician created, into which a clinician-and-reviewer uploaded one cell."""
    both = make_user("both", "reviewer", [site])
    both.groups.add(Group.objects.get_or_create(name="clinician")[0])
    add_cells(ready, both, [0.3])
    return ready, both


def test_an_uploader_who_did_not_create_the_case_is_not_offered_it(uploaded_by_reviewer):
    # One rule for the service, the queue and the badge: they had drifted (creator only).
    case, both = uploaded_by_reviewer
    assert case.created_by_id != both.pk
    queued = review_queue(both).get(pk=case.pk)
    assert queued.four_eyes_blocked
    assert review_queue_new_count(both) == 0
    with pytest.raises(PermissionDenied, match="Four-eyes"):
        reviews.review_claim(case=case, by=both)


def test_the_queue_and_badge_offer_the_case_to_a_reviewer_who_did_not_touch_it(
    uploaded_by_reviewer, reviewer
):
    case, _ = uploaded_by_reviewer
    assert not review_queue(reviewer).get(pk=case.pk).four_eyes_blocked
    assert review_queue_new_count(reviewer) == 1


def test_the_queue_and_badge_follow_the_four_eyes_switch(uploaded_by_reviewer, settings):
    settings.REVIEW_FOUR_EYES = False
    case, both = uploaded_by_reviewer
    assert not review_queue(both).get(pk=case.pk).four_eyes_blocked
    assert review_queue_new_count(both) == 1
    assert reviews.review_claim(case=case, by=both).assigned_reviewer == both


# --- Decisions ------------------------------------------------------------------------------


def test_reviewing_needs_the_claim(ready, reviewer):
    with pytest.raises(ValidationError, match="Claim the case"):
        reviews.review_submit(image=cells(ready)[0], by=reviewer, decision="confirm")


def test_another_reviewer_cannot_decide_on_a_claimed_case(claimed, site):
    with pytest.raises(reviews.ClaimConflict):
        reviews.review_submit(image=cells(claimed)[0], by=second_reviewer(site), decision="confirm")


def test_confirm_records_a_review_and_leaves_the_prediction(claimed, reviewer):
    image = cells(claimed)[0]
    before = Prediction.objects.values().get(image=image)
    review = reviews.review_submit(image=image, by=reviewer, decision="confirm")
    assert (review.decision, review.label, review.reviewer) == ("confirm", P, reviewer)
    assert Prediction.objects.values().get(image=image) == before
    (event,) = events("review.confirmed")
    assert event.before == {
        "image": image.pk,
        "model_label": P,
        "probability": 0.95,
        "review": None,
    }
    assert event.after["review"]["label"] == P


def test_override_requires_a_listed_reason_and_free_text(claimed, reviewer):
    image = cells(claimed)[0]
    with pytest.raises(ValidationError, match="reason from the list"):
        reviews.review_submit(image=image, by=reviewer, decision="override", label=U)
    with pytest.raises(ValidationError, match="reason from the list"):
        reviews.review_submit(
            image=image,
            by=reviewer,
            decision="override",
            label=U,
            reason_code="bad",
            reason_text="x",
        )
    with pytest.raises(ValidationError, match="Describe the reason"):
        reviews.review_submit(
            image=image, by=reviewer, decision="override", label=U, reason_code="artefact"
        )
    assert not Review.objects.exists()


def test_override_must_change_the_label(claimed, reviewer):
    with pytest.raises(ValidationError, match="must change"):
        reviews.review_submit(
            image=cells(claimed)[0],
            by=reviewer,
            decision="override",
            label=P,
            reason_code="other",
            reason_text="same",
        )


def test_override_sets_the_final_label_and_keeps_the_model_result(claimed, reviewer):
    image = cells(claimed)[0]
    review = reviews.review_submit(
        image=image,
        by=reviewer,
        decision="override",
        label=U,
        reason_code="platelet_overlap",
        reason_text="Platelet lying over the cell",
    )
    assert review.label == U
    assert image.prediction.label == P
    (event,) = events("review.overridden")
    assert event.after["review"]["reason_code"] == "platelet_overlap"
    assert event.before["model_label"] == P


def test_the_latest_review_is_the_current_one(claimed, reviewer):
    image = cells(claimed)[0]
    reviews.review_submit(image=image, by=reviewer, decision="confirm")
    reviews.review_submit(
        image=image,
        by=reviewer,
        decision="override",
        label=U,
        reason_code="poor_focus",
        reason_text="Out of focus",
    )
    assert image.reviews.count() == 2
    assert image.reviews.first().decision == "override"
    counts = case_review_counts(claimed)
    assert counts.overridden == 1 and counts.reviewed == 1
    event = events("review.overridden")[0]
    assert event.before["review"]["decision"] == "confirm"


def test_confirm_remaining_takes_only_high_confidence_results(claimed, reviewer, settings):
    settings.ANALYSIS_UNCERTAIN_MARGIN = 0.15
    confirmed = reviews.review_confirm_remaining(case=claimed, by=reviewer)
    assert confirmed == 2  # 0.95 and 0.05; not 0.55 (near threshold) nor the quality-flagged one
    reviewed = set(Review.objects.values_list("image__prediction__probability", flat=True))
    assert reviewed == {0.95, 0.05}
    (event,) = events("review.confirmed_remaining")
    assert event.after["count"] == 2
    assert {item["review"] for item in event.before["images"]} == {None}
    assert reviews.review_confirm_remaining(case=claimed, by=reviewer) == 0


# --- Sign-off -------------------------------------------------------------------------------


def test_sign_off_requires_every_cell_reviewed(claimed, reviewer):
    reviews.review_confirm_remaining(case=claimed, by=reviewer)
    with pytest.raises(ValidationError, match="2 of 4 cells are not reviewed"):
        reviews.case_sign_off(case=claimed, by=reviewer, diagnosis="positive")


def test_sign_off_records_parasitemia_with_its_wilson_interval(claimed, reviewer):
    decide_all(claimed, reviewer)  # reviewer-positive: 0.95 and 0.55 -> 2 of 4
    signed = reviews.case_sign_off(case=claimed, by=reviewer, diagnosis="positive", note="P. f.")
    low, high = wilson_interval(2, 4)
    assert signed.status == Case.Status.SIGNED_OFF
    assert (signed.final_positive_cells, signed.final_reviewed_cells) == (2, 4)
    assert signed.final_parasitemia == pytest.approx(50.0)
    assert signed.final_parasitemia_low == pytest.approx(100 * low)
    assert signed.final_parasitemia_high == pytest.approx(100 * high)
    assert (signed.signed_off_by, signed.sign_off_note) == (reviewer, "P. f.")
    (event,) = events("case.signed_off")
    assert event.before["status"] == "awaiting_review"
    assert event.after["final_diagnosis"] == "positive"
    assert len(event.after["failed_images"]) == 1


def test_the_diagnosis_must_agree_with_the_reviewers_labels(claimed, reviewer):
    decide_all(claimed, reviewer)
    with pytest.raises(ValidationError, match="labelled parasitized"):
        reviews.case_sign_off(case=claimed, by=reviewer, diagnosis="negative")


def test_negative_sign_off_after_overriding_every_positive(claimed, reviewer):
    decide_cells(
        claimed,
        reviewer,
        override=lambda image: image.prediction.label == P,
        reason_code="artefact",
        reason_text="Debris",
    )
    with pytest.raises(ValidationError, match="at least one cell"):
        reviews.case_sign_off(case=claimed, by=reviewer, diagnosis="positive")
    signed = reviews.case_sign_off(case=claimed, by=reviewer, diagnosis="negative")
    assert signed.final_parasitemia == 0.0
    assert signed.final_parasitemia_low == 0.0 and signed.final_parasitemia_high > 0


def test_sign_off_needs_the_claim(ready, reviewer, site):
    reviews.review_claim(case=ready, by=reviewer)
    decide_all(ready, reviewer)
    with pytest.raises(reviews.ClaimConflict):
        reviews.case_sign_off(case=ready, by=second_reviewer(site), diagnosis="positive")


@pytest.fixture
def signed(claimed, reviewer):
    decide_all(claimed, reviewer)
    return reviews.case_sign_off(case=claimed, by=reviewer, diagnosis="positive")


def test_a_signed_case_is_locked(signed, reviewer, clinician):
    image = cells(signed)[0]
    with pytest.raises(ValidationError, match="signed off"):
        reviews.review_submit(image=image, by=reviewer, decision="confirm")
    with pytest.raises(ValidationError, match="signed off"):
        reviews.review_confirm_remaining(case=signed, by=reviewer)
    with pytest.raises(ValidationError, match="signed off"):
        reviews.case_sign_off(case=signed, by=reviewer, diagnosis="positive")
    with pytest.raises(ValidationError, match="locked"):
        services.images_add(case=signed, files=[("x.png", b"x")], by=clinician)


def test_sign_off_notifies_the_clinician(signed, clinician):
    (note,) = Notification.objects.filter(user=clinician)
    assert note.case == signed and "signed off" in note.message and note.read_at is None


# --- Reopen and send back -------------------------------------------------------------------


def test_only_an_admin_can_reopen(signed, reviewer, clinician):
    for user in (reviewer, clinician):
        with pytest.raises(PermissionDenied):
            reviews.case_reopen(case=signed, by=user, reason="Typo")


def test_reopening_needs_a_reason(signed, lab_admin):
    with pytest.raises(ValidationError, match="reason"):
        reviews.case_reopen(case=signed, by=lab_admin, reason="  ")


def test_reopen_unlocks_the_case_and_keeps_the_history(signed, lab_admin, reviewer, clinician):
    case = reviews.case_reopen(case=signed, by=lab_admin, reason="Wrong patient slide")
    assert case.status == Case.Status.AWAITING_REVIEW
    assert case.final_diagnosis == "" and case.final_parasitemia is None
    assert case.signed_off_by is None and case.assigned_reviewer is None
    assert (case.reopened_by, case.reopen_reason) == (lab_admin, "Wrong patient slide")
    (event,) = events("case.reopened")
    assert event.before["final_diagnosis"] == "positive"
    assert event.before["status"] == "signed_off"
    assert event.after == {
        "status": "awaiting_review",
        "reason": "Wrong patient slide",
        "assigned_reviewer": None,
        "claimed_at": None,
        "superseded_report": ReportExport.objects.get(case=case).pk,  # the signed PDF, kept
    }
    assert Notification.objects.filter(user=reviewer, case=case).exists()
    assert Review.objects.filter(image__case=case).count() == 4  # decisions are kept


def test_a_sign_off_is_a_row_that_matches_the_current_sign_off(signed, reviewer):
    (row,) = SignOff.objects.filter(case=signed)
    assert (row.signed_by, row.signed_at, row.diagnosis) == (
        reviewer,
        signed.signed_off_at,
        signed.final_diagnosis,
    )
    assert (row.positive_cells, row.reviewed_cells) == (2, 4)
    assert (row.parasitemia, row.parasitemia_low, row.parasitemia_high) == (
        signed.final_parasitemia,
        signed.final_parasitemia_low,
        signed.final_parasitemia_high,
    )
    assert events("case.signed_off")[0].after["sign_off"] == row.pk


def test_a_reopen_leaves_the_earlier_sign_off_and_a_second_one_adds_a_row(
    signed, lab_admin, reviewer
):
    first = SignOff.objects.get(case=signed)
    case = reviews.case_reopen(case=signed, by=lab_admin, reason="Wrong patient slide")
    assert case.final_diagnosis == ""  # the case's columns hold the current sign-off only
    assert SignOff.objects.get(case=case) == first
    reviews.review_claim(case=case, by=reviewer)
    image = cells(case)[0]  # the clear positive: the reviewer now calls it debris
    reviews.review_submit(
        image=image,
        by=reviewer,
        decision="override",
        label=U,
        reason_code="stain_debris",
        reason_text="Precipitate",
    )
    reviews.case_sign_off(case=case, by=reviewer, diagnosis="positive", note="Second look")
    history = case_diagnosis_history(case)
    assert [(e.kind, e.diagnosis, e.detail) for e in history] == [
        ("signed_off", "Positive", ""),
        ("reopened", "", "Wrong patient slide"),
        ("signed_off", "Positive", "Second look"),
    ]
    assert [e.by for e in history] == [reviewer.username, lab_admin.username, reviewer.username]
    latest, earlier = SignOff.objects.filter(case=case)
    assert earlier == first and (latest.positive_cells, earlier.positive_cells) == (1, 2)


def test_sign_offs_are_never_updated_or_deleted(signed):
    row = SignOff.objects.get(case=signed)
    with pytest.raises(PermissionError):
        row.save()
    with pytest.raises(PermissionError):
        row.delete()
    with pytest.raises(PermissionError):
        SignOff.objects.filter(case=signed).update(note="changed")
    with pytest.raises(PermissionError):
        SignOff.objects.filter(case=signed).delete()


def test_a_superuser_can_reopen(signed, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="x-for-tests-123")
    assert reviews.case_reopen(case=signed, by=root, reason="Audit").status == "awaiting_review"


def test_send_back_returns_the_case_to_its_clinician(claimed, reviewer, clinician):
    case = reviews.case_send_back(case=claimed, by=reviewer, reason="Images out of focus")
    assert case.status == Case.Status.OPEN
    assert case.assigned_reviewer is None
    assert (case.sent_back_by, case.send_back_reason) == (reviewer, "Images out of focus")
    (event,) = events("case.sent_back")
    assert event.before == {
        "status": "awaiting_review",
        "assigned_reviewer": reviewer.pk,
        "claimed_at": claimed.claimed_at.isoformat(),
    }
    assert event.after["reason"] == "Images out of focus"
    note = Notification.objects.get(user=clinician)
    assert "sent back" in note.message and "out of focus" in note.message


def test_send_back_needs_a_reason_and_the_reviewer_role(ready, reviewer, clinician):
    with pytest.raises(ValidationError):
        reviews.case_send_back(case=ready, by=reviewer, reason="")
    with pytest.raises(PermissionDenied):
        reviews.case_send_back(case=ready, by=clinician, reason="x")


def test_new_uploads_after_send_back_bring_the_case_back(claimed, reviewer, clinician):
    reviews.case_send_back(case=claimed, by=reviewer, reason="Blurred")
    case = Case.objects.get(pk=claimed.pk)
    add_cells(case, clinician, [0.2])
    assert Case.objects.get(pk=case.pk).status == Case.Status.AWAITING_REVIEW


# --- Queue ----------------------------------------------------------------------------------


def test_the_queue_puts_urgent_cases_first_and_counts_pending_images(
    patient, clinician, reviewer, site, settings
):
    settings.ANALYSIS_UNCERTAIN_MARGIN = 0.15
    clear = services.case_create(patient=patient, by=clinician)
    add_cells(clear, clinician, [0.01, 0.02, 0.03])
    near = services.case_create(patient=patient, by=clinician)
    add_cells(near, clinician, [0.01, 0.45])
    positive = services.case_create(patient=patient, by=clinician)
    add_cells(positive, clinician, [0.99, 0.01])
    queue = list(review_queue(reviewer))
    assert [c.pk for c in queue] == [near.pk, positive.pk, clear.pk]
    by_id = {c.pk: c for c in queue}
    assert (by_id[near.pk].pending_count, by_id[near.pk].near_count) == (2, 1)
    assert by_id[positive.pk].positive_count == 1
    assert by_id[clear.pk].urgency == 0
    reviews.review_claim(case=clear, by=reviewer)
    reviews.review_confirm_remaining(case=clear, by=reviewer)
    assert {c.pk: c.pending_count for c in review_queue(reviewer)}[clear.pk] == 0


def test_the_queue_is_scoped_to_the_reviewers_sites(ready, other_site):
    assert list(review_queue(make_user("rev-other", "reviewer", [other_site]))) == []


def test_the_badge_counts_unclaimed_cases_a_reviewer_may_take(ready, reviewer, clinician, site):
    assert review_queue_new_count(reviewer) == 1
    assert review_queue_new_count(clinician) == 0
    reviews.review_claim(case=ready, by=reviewer)
    assert review_queue_new_count(second_reviewer(site)) == 0


def test_the_data_migration_restores_every_sign_off_from_the_audit_trail(
    signed, lab_admin, reviewer
):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("cases.migrations.0009_sign_offs")
    reviews.case_reopen(case=signed, by=lab_admin, reason="Recount")
    reviews.review_claim(case=signed, by=reviewer)
    reviews.case_sign_off(case=signed, by=reviewer, diagnosis="positive", note="Again")
    fields = ["signed_by", "signed_at", "diagnosis", "positive_cells", "reviewed_cells", "note"]
    fields += ["parasitemia", "parasitemia_low", "parasitemia_high"]
    written = list(SignOff.objects.order_by("signed_at").values_list(*fields))
    SignOff._base_manager.all()._raw_delete(SignOff.objects.db)  # as before the migration
    migration.sign_offs_from_history(apps, None)
    assert list(SignOff.objects.order_by("signed_at").values_list(*fields)) == written
    assert len(written) == 2
