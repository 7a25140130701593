"""meetup-app: serve the Streamlit app, on 127.0.0.1:8501 unless told otherwise.

meetup-app                                   # http://127.0.0.1:8501, for you alone
meetup-app --address 0.0.0.0                 # shared: needs [auth] in .streamlit/secrets.toml (a login)
meetup-app --address 0.0.0.0 --no-auth       # shared with no login, on purpose
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from app import auth
from common import cli

APP = Path(__file__).with_name("main.py")


@cli.command("meetup-app")
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("meetup-app", __doc__)
    parser.add_argument(
        "--address", default="127.0.0.1", help="the interface to serve on (loopback: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8501, help="the port to serve on")
    parser.add_argument(
        "--secrets",
        type=Path,
        help="the secrets file with the [auth] section (default: Streamlit's, ~/.streamlit/ and ./.streamlit/)",
    )
    parser.add_argument("--no-auth", action="store_true", help="serve a non-loopback address with no login")
    args = parser.parse_args(argv)
    files = [args.secrets] if args.secrets else auth.default_secrets_files()
    if args.secrets and not args.secrets.is_file():
        print(f"meetup-app: no secrets file at {args.secrets}", file=sys.stderr)
        return 2
    login = not auth.is_loopback(args.address) and not args.no_auth
    if login:
        try:
            auth.check_auth(auth.auth_section(files))
        except auth.AuthError as error:
            print(
                f"meetup-app: refusing to serve {args.address} without a login: {error} "
                f'({" or ".join(str(f) for f in files)}); see docs/app.md, "Sharing the app", or pass --no-auth',
                file=sys.stderr,
            )
            return 2
    # Streamlit runs in this process: the setting reaches its pages (Settings.app_login) through our environment.
    os.environ[auth.LOGIN_ENV] = "1" if login else "0"
    from streamlit.web import cli as streamlit_cli

    logging.getLogger(__name__).info("http://%s:%s%s", args.address, args.port, " (login required)" if login else "")
    sys.argv = [
        "streamlit", "run", str(APP),
        "--server.address", args.address, "--server.port", str(args.port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--server.enableStaticServing", "true",  # app/static: the maps' country outlines (ui.OFFLINE_MAPS)
    ]  # fmt: skip
    if args.secrets:
        sys.argv += ["--secrets.files", str(args.secrets)]
    return int(streamlit_cli.main())


if __name__ == "__main__":
    sys.exit(main())
