"""Sharing the app: a login off loopback, refused without one unless --no-auth says so."""

from __future__ import annotations

import pytest

from app import auth, cli

GOOD = {
    "redirect_uri": "http://meetup.example:8501/oauth2callback",
    "cookie_secret": "a-long-random-secret-of-enough-bits-0123456789",
    "client_id": "meetup-rsvps",
    "client_secret": "s3cret",
    "server_metadata_url": "https://accounts.google.com/.well-known/openid-configuration",
}


@pytest.mark.parametrize(
    ("address", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("0.0.0.0", False), ("10.1.2.3", False),
     ("meetup.example", False)],
)  # fmt: skip
def test_only_loopback_addresses_serve_without_a_login(address, loopback):
    assert auth.is_loopback(address) is loopback


def test_an_auth_section_needs_the_shared_and_the_provider_settings():
    auth.check_auth(GOOD)
    named = {"redirect_uri": GOOD["redirect_uri"], "cookie_secret": GOOD["cookie_secret"],
             "google": {k: GOOD[k] for k in auth.REQUIRED}}  # fmt: skip
    auth.check_auth(named)
    with pytest.raises(auth.AuthError, match="no \\[auth\\] section"):
        auth.check_auth({})
    with pytest.raises(auth.AuthError, match="lacks cookie_secret, client_secret"):
        auth.check_auth({k: v for k, v in GOOD.items() if k not in ("cookie_secret", "client_secret")})
    with pytest.raises(auth.AuthError, match="lacks google.server_metadata_url"):
        auth.check_auth({**named, "google": {"client_id": "x", "client_secret": "y"}})


def test_meetup_app_off_loopback_without_auth_refuses_to_start_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--address", "0.0.0.0", "--port", "8599"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("meetup-app: refusing to serve 0.0.0.0 without a login: no [auth] section")
    assert "--no-auth" in err and "Sharing the app" in err


def test_a_secrets_file_that_is_not_there_is_named(tmp_path, capsys):
    assert cli.main(["--address", "0.0.0.0", "--secrets", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err == f"meetup-app: no secrets file at {tmp_path / 'nope.toml'}\n"
