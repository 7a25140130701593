"""meetup-app: serve the Streamlit app, on 127.0.0.1:8501 unless told otherwise.

meetup-app                          # http://127.0.0.1:8501
meetup-app --port 8600 --address 0.0.0.0   # only if you mean to expose it
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

APP = Path(__file__).with_name("main.py")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meetup-app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8501)
    args = parser.parse_args(argv)
    from streamlit.web import cli as streamlit_cli

    print(f"meetup-app: http://{args.address}:{args.port}", file=sys.stderr, flush=True)
    sys.argv = [
        "streamlit", "run", str(APP),
        "--server.address", args.address, "--server.port", str(args.port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--server.enableStaticServing", "true",  # app/static: the maps' country outlines (ui.OFFLINE_MAPS)
    ]  # fmt: skip
    return streamlit_cli.main()


if __name__ == "__main__":
    sys.exit(main())
