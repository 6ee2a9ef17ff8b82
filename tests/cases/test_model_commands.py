"""activate_model and install_default_model: promotion, rollback and refusal of tampered files."""

import hashlib
import json

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError

from cases.models import AuditEvent
from classifier.models import ModelVersion
from tests.conftest import register_model


def test_activate_model_promotes_and_rolls_back_with_audit_events(db, tiny_model_path, capsys):
    first = register_model(tiny_model_path, name="v1", active=True)
    register_model(tiny_model_path, name="v2", active=False)
    call_command("activate_model", "v2")
    assert ModelVersion.objects.get(is_active=True).name == "v2"
    call_command("activate_model", "v1")  # rollback
    assert ModelVersion.objects.get(is_active=True) == first
    events = AuditEvent.objects.filter(action="model.activated").order_by("seq")
    assert [(e.before["active"], e.after["active"]) for e in events] == [("v1", "v2"), ("v2", "v1")]
    assert "Active model: v1 (was v2)" in capsys.readouterr().out


def test_activate_model_refuses_a_tampered_file(db, tiny_model_path):
    version = register_model(tiny_model_path, name="v1", active=False)
    with default_storage.open(version.file.name, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(CommandError, match="expected sha256"):
        call_command("activate_model", "v1")
    assert not ModelVersion.objects.filter(is_active=True).exists()


def test_activate_model_names_the_known_versions(db, tiny_model_path):
    register_model(tiny_model_path, name="v1", active=False)
    with pytest.raises(CommandError, match="known: v1"):
        call_command("activate_model", "nope")


def shipped_folder(tmp_path, tiny_model_path, sha=None):
    folder = tmp_path / "default_model"
    folder.mkdir()
    (folder / "model.keras").write_bytes(tiny_model_path.read_bytes())
    digest = sha or hashlib.sha256(tiny_model_path.read_bytes()).hexdigest()
    manifest = {"name": "shipped-v1", "sha256": digest, "threshold": 0.4, "temperature": 1.3}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "card.json").write_text(json.dumps({"intended_use": "decision support"}))
    return folder


def test_install_default_model_registers_and_activates_once(db, tmp_path, tiny_model_path):
    folder = shipped_folder(tmp_path, tiny_model_path)
    call_command("install_default_model", "--dir", str(folder))
    call_command("install_default_model", "--dir", str(folder))  # idempotent
    version = ModelVersion.objects.get()
    assert version.is_active and version.name == "shipped-v1"
    assert (version.threshold, version.temperature) == (0.4, 1.3)
    assert version.card == {"intended_use": "decision support"}


def test_install_default_model_keeps_an_admins_choice(db, tmp_path, tiny_model_path):
    register_model(tiny_model_path, name="chosen", active=True)
    call_command("install_default_model", "--dir", str(shipped_folder(tmp_path, tiny_model_path)))
    assert ModelVersion.objects.get(is_active=True).name == "chosen"


def test_install_default_model_refuses_a_file_that_does_not_match(db, tmp_path, tiny_model_path):
    folder = shipped_folder(tmp_path, tiny_model_path, sha="f" * 64)
    with pytest.raises(CommandError, match="refusing"):
        call_command("install_default_model", "--dir", str(folder))
    assert not ModelVersion.objects.exists()
