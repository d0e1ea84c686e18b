"""The command line's proxy, credential and cookie options turned into Manager settings.

``-u USER`` without a password asks for it on the terminal (as curl does); the cookies of
``--load-cookies`` and those the servers set go to ``--save-cookies`` when the run ends.
"""

from __future__ import annotations

import getpass
import http.cookiejar
import sys
from typing import Any, Dict, Optional, TextIO, Tuple

from accel._util.cookies import CookiesTxt, load_cookies, save_cookies
from accel._util.proxies import check_environment_proxies
from accel.cli.exitcodes import EXIT_LOCAL, EXIT_OK
from accel.exceptions import UsageError


def network_settings(args: Any) -> Dict[str, Any]:
    """The Options settings for --proxy, --noproxy, -u, --netrc-file, --no-netrc and the
    cookie files (loaded here: a bad file is a usage error before anything is fetched)."""
    if args.proxy is None:
        check_environment_proxies()  # a SOCKS proxy there needs PySocks too
    jar: Optional[http.cookiejar.CookieJar] = None
    if args.load_cookies:
        jar = load_cookies(args.load_cookies)
    elif args.save_cookies:
        jar = CookiesTxt()  # one jar for the whole run, written at its end
    return {
        "proxy": args.proxy,
        "noproxy": args.noproxy,
        "auth": credentials(args.user),
        "netrc": args.netrc_file or args.netrc,
        "cookies": jar,
    }


def credentials(user: Optional[Tuple[str, Optional[str]]]) -> Optional[Tuple[str, str]]:
    """(user, password) of ``-u``; a missing password is asked for on the terminal."""
    if user is None:
        return None
    name, password = user
    if password is None:
        if not sys.stdin.isatty():
            raise UsageError(
                f"-u {name} has no password and there is no terminal to ask on "
                "(give -u USER:PASSWORD or use a netrc file)"
            )
        try:
            password = getpass.getpass(f"Enter host password for user '{name}': ")
        except EOFError:
            raise UsageError(f"no password given for user {name!r}") from None
    return name, password


def finish_cookies(args: Any, jar: Any, code: int, err: TextIO) -> int:
    """Write the run's cookies to --save-cookies; the exit code (6 if that fails)."""
    if not args.save_cookies or not isinstance(jar, http.cookiejar.CookieJar):
        return code
    try:
        save_cookies(jar, args.save_cookies)
    except OSError as exc:
        err.write(
            f"accel: error: cannot save cookies to {args.save_cookies}: {exc.strerror or exc}\n"
        )
        return EXIT_LOCAL if code == EXIT_OK else code
    return code
