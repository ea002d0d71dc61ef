"""``python -m errands dashboard [--redis URL --namespace NS | --app MODULE:ATTRIBUTE]
[--listen 127.0.0.1:5040]
[--basic-auth user:pass | --token T] [--trusted-proxy ADDR ...] [--allowed-host NAME ...]
[--redact KEY ...]``.

Credentials may come from ``ERRANDS_DASHBOARD_TOKEN`` / ``ERRANDS_DASHBOARD_BASIC_AUTH`` instead
of the command line (where other local users could read them in the process list)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from typing import Any

from ..errors import ErrandsError
from .target import Target, add_target_options

__all__ = ["add_dashboard_command", "parse_listen"]

DEFAULT_LISTEN = "127.0.0.1:5040"


def add_dashboard_command(sub: Any) -> None:
    p = sub.add_parser("dashboard", help="serve the web dashboard (needs errands[dashboard])")
    add_target_options(p)
    p.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT (default %(default)s)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument(
        "--basic-auth",
        metavar="USER:PASS",
        default=os.environ.get("ERRANDS_DASHBOARD_BASIC_AUTH") or None,
        help="require HTTP basic auth (default $ERRANDS_DASHBOARD_BASIC_AUTH)",
    )
    auth.add_argument(
        "--token",
        default=os.environ.get("ERRANDS_DASHBOARD_TOKEN") or None,
        help="require this bearer token / login token (default $ERRANDS_DASHBOARD_TOKEN)",
    )
    p.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR",
        help="proxy address or network whose X-Forwarded-For is believed (repeatable)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name the dashboard is reached by (repeatable; default: loopback names "
        "only without credentials, which refuses DNS rebinding)",
    )
    p.add_argument(
        "--redact",
        action="append",
        default=[],
        metavar="KEY",
        help="also hide argument keys containing KEY (repeatable; password, token, secret, "
        "api_key, authorization... are always hidden)",
    )
    p.add_argument("--read-only", action="store_true", help="refuse every action")
    p.set_defaults(func=_serve)


def parse_listen(listen: str) -> tuple[str, int]:
    """``127.0.0.1:5040``, ``[::1]:5040``, ``:5040`` (loopback) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ErrandsError(f"--listen expects HOST:PORT (e.g. {DEFAULT_LISTEN}), got {listen!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..web import DEFAULT_REDACT, dashboard
    except ImportError as exc:
        raise ErrandsError(
            f"the dashboard needs its extra: pip install 'errands[dashboard]' ({exc})"
        ) from None
    if args.basic_auth and args.token:
        raise ErrandsError("give --basic-auth or --token, not both")
    host, port = parse_listen(args.listen)
    target = Target.resolve(args)
    if target.url is None:
        raise ErrandsError(f"{args.app} has no Redis URL: give --redis URL")
    try:
        app = dashboard(
            target.url,
            namespace=target.namespace,
            basic_auth=args.basic_auth,
            token=args.token,
            trusted_proxies=args.trusted_proxy,
            allowed_hosts=args.allowed_host,
            redact=[*DEFAULT_REDACT, *args.redact],
            read_only=args.read_only,
        )
    except ValueError as exc:
        raise ErrandsError(str(exc)) from None
    auth = "basic auth" if args.basic_auth else "token" if args.token else None
    if auth is None and not _is_loopback_host(host):
        print(
            f"errands: listening on {host} without --token/--basic-auth: requests from other "
            "hosts will be refused (403)",
            file=sys.stderr,
        )
    print(
        f"errands dashboard on http://{_url_host(host)}:{port}/ ({auth or 'loopback only'}): "
        f"{target.where}"
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        proxy_headers=False,  # the dashboard decides about X-Forwarded-For (--trusted-proxy)
        server_header=False,
        log_level="info",
    )
    return 0


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
