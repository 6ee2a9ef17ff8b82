from django.core.checks import run_checks


def warning_ids(include_deployment_checks: bool) -> set[str]:
    return {m.id for m in run_checks(include_deployment_checks=include_deployment_checks)}


def test_check_deploy_warns_when_the_audit_trail_is_not_keyed(settings):
    settings.AUDIT_HMAC_KEY = ""
    assert "cases.W001" in warning_ids(include_deployment_checks=True)
    assert "cases.W001" not in warning_ids(include_deployment_checks=False)


def test_no_warning_with_a_key(settings):
    settings.AUDIT_HMAC_KEY = "a-long-random-secret"
    assert "cases.W001" not in warning_ids(include_deployment_checks=True)
