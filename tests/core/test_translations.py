"""The German catalogue is complete, compiled, and covers every string in the source."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import polib
from django.conf import settings

from tests.conftest import require_component

LOCALE_DIR = Path(settings.BASE_DIR) / "locale" / "de" / "LC_MESSAGES"
SOURCE_DIRS = ["agents", "channels_app", "config", "contacts", "conversations", "core", "supervisor", "templates"]


def test_german_catalogue_has_no_untranslated_or_fuzzy_entries():
    catalogue = polib.pofile(str(LOCALE_DIR / "django.po"))
    assert [e.msgid for e in catalogue.untranslated_entries()] == []
    assert [e.msgid for e in catalogue.fuzzy_entries()] == []
    assert catalogue.percent_translated() == 100


def test_compiled_catalogue_matches_the_source_catalogue():
    source = polib.pofile(str(LOCALE_DIR / "django.po"))
    compiled = polib.mofile(str(LOCALE_DIR / "django.mo"))
    expected = {
        (e.msgctxt, e.msgid): (e.msgstr, tuple(sorted(e.msgstr_plural.items()))) for e in source.translated_entries()
    }
    actual = {(e.msgctxt, e.msgid): (e.msgstr, tuple(sorted(e.msgstr_plural.items()))) for e in compiled if e.msgid}
    assert actual == expected, "run `make messages` to recompile locale/de"


def test_catalogue_covers_every_translatable_string_in_the_source(tmp_path):
    require_component(shutil.which("xgettext") is not None, "GNU gettext (xgettext)")
    for name in SOURCE_DIRS:
        shutil.copytree(Path(settings.BASE_DIR) / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(Path(settings.BASE_DIR) / "manage.py", tmp_path / "manage.py")
    (tmp_path / "locale" / "de" / "LC_MESSAGES").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "manage.py", "makemessages", "--locale", "de", "--no-location"],
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "DEBUG": "true",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PARLEY_VAR_DIR": str(tmp_path / "var"),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    extracted = {(e.msgctxt, e.msgid) for e in polib.pofile(str(tmp_path / "locale/de/LC_MESSAGES/django.po"))}
    shipped = {(e.msgctxt, e.msgid) for e in polib.pofile(str(LOCALE_DIR / "django.po")) if not e.obsolete}
    missing = sorted(msgid for _ctx, msgid in extracted - shipped)
    assert missing == [], "strings missing from locale/de: run `make messages` and translate"
