"""Login when the app is shared: Streamlit's own OIDC login (`st.login`), required off loopback.

On 127.0.0.1 (the default) nothing changes: the app is one person's. Bound to any other address,
`meetup-app` requires an `[auth]` section (Streamlit's format: `redirect_uri`, `cookie_secret`, `client_id`,
`client_secret`, `server_metadata_url`, or `[auth.<provider>]` sections) in the secrets file, and refuses to
start without one unless `--no-auth` says the exposure is meant. With it, a browser sees a login button and
nothing of the data until the identity provider says who it is (app/main.py).
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any

from common.settings import Settings

REQUIRED = ("client_id", "client_secret", "server_metadata_url")
SHARED = ("redirect_uri", "cookie_secret")
LOGIN_ENV = "MEETUP_APP_LOGIN"  # set by meetup-app for the Streamlit process: "1" means pages need a login


class AuthError(ValueError):
    """The secrets file's [auth] section is missing or incomplete; the message says what to add."""


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may be reached from elsewhere


def default_secrets_files(cwd: Path | None = None) -> list[Path]:
    """Where Streamlit looks for secrets: the user's, then the working directory's (which wins)."""
    return [Path.home() / ".streamlit" / "secrets.toml", (cwd or Path.cwd()) / ".streamlit" / "secrets.toml"]


def auth_section(files: list[Path]) -> dict[str, Any]:
    """The [auth] section Streamlit would read from these files (later files win), {} when none has one."""
    section: dict[str, Any] = {}
    for path in files:
        if path.is_file():
            with path.open("rb") as f:
                section.update(tomllib.load(f).get("auth", {}))
    return section


def check_auth(section: dict[str, Any]) -> None:
    """Raise AuthError unless the section lets Streamlit log people in (one provider or named ones)."""
    if not section:
        raise AuthError("no [auth] section in the secrets file")
    missing = [key for key in SHARED if not section.get(key)]
    providers = {name: value for name, value in section.items() if isinstance(value, dict)}
    configured = [providers] if providers else [{"": section}]
    for named in configured:
        for name, provider in named.items():
            missing += [f"{name}.{key}" if name else key for key in REQUIRED if not provider.get(key)]
    if missing:
        raise AuthError(f"[auth] lacks {', '.join(missing)}")


def login_required(settings: Settings) -> bool:
    """MEETUP_APP_LOGIN, which meetup-app sets for the Streamlit it runs (in its own process)."""
    return settings.app_login
