"""Generated secrets: 0600, stable, refused when exposed; the redactor masks them everywhere."""

from __future__ import annotations

import os

import pytest

from coursehub import secrets


def test_generated_on_first_need_and_stable(tmp_path):
    s = secrets.load(tmp_path)
    assert not s.path.exists()
    a = s.get("dummy_password")
    assert len(a) == 64 and s.path.exists()
    assert oct(os.stat(s.path).st_mode & 0o777) == "0o600"
    assert secrets.load(tmp_path).get("dummy_password") == a
    assert secrets.load(tmp_path).names() == ["dummy_password"]


def test_readable_file_is_refused(tmp_path):
    s = secrets.load(tmp_path)
    s.get("x_token")
    os.chmod(s.path, 0o644)
    with pytest.raises(secrets.SecretsError, match="readable by group or others .mode 0644.; treat its values as leaked"):
        secrets.load(tmp_path)


def test_redactor_masks_text_and_data(tmp_path):
    s = secrets.load(tmp_path)
    token = s.get("api_token")
    r = secrets.redactor(env={"OS_PASSWORD": "hunter2-cloud"})
    assert r(f"token={token} pw=hunter2-cloud") == "token=*** pw=***"
    assert r.data({"a": [f"x{token}y", 3], "b": ("hunter2-cloud",)}) == {"a": ["x***y", 3], "b": ["***"]}


def test_short_values_are_not_masked():
    r = secrets.Redactor(["abc", ""])
    assert r("abc abc") == "abc abc"
