"""Run the sandbox alone: python -m kie.sandbox --port 8600."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from kie.sandbox.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m kie.sandbox", description="A local stand-in of the Kie Suno API."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8600, help="port to listen on (8600)")
    parser.add_argument(
        "--stage-delay", type=float, default=2.0, help="seconds per task stage (2.0)"
    )
    parser.add_argument("--hmac-key", default=None, help="sign callbacks with this key")
    parser.add_argument("--credits", type=int, default=500, help="starting credits (500)")
    parser.add_argument(
        "--public-base-url",
        default=None,
        help="absolute base URL to put in returned links (default: from each request)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    app = create_app(
        public_base_url=args.public_base_url,
        stage_delay_s=args.stage_delay,
        hmac_key=args.hmac_key,
        credits=args.credits,
    )
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
