"""The downloads a command asks for: URLs on the command line, then ``-i FILE`` in aria2's format.

An input file has one download per URL line (tab-separated URLs: the first one and its
mirrors), each followed by its option lines, indented with spaces or tabs, as aria2c reads
them::

    https://example.org/a.iso	https://mirror.example.net/a.iso
      out=a-2026.iso
      dir=isos
      checksum=sha-256=9f86d08...
      header=Authorization: Bearer abc
      connections=4

``out=`` is a file name (never a path), ``dir=`` is relative to ``-d`` unless absolute,
``checksum=`` takes ``ALGO=HEX`` (aria2's ``sha-256=`` spelling too), ``header=`` repeats,
``connections=`` (aria2's ``split=``) is a count or ``auto``. Blank lines and ``#`` comments
are skipped; an indented line that starts with a URL is a URL line. Lines are read lazily:
a list of 100,000 URLs starts at once and costs little memory. A bad line is a usage error
naming ``FILE:LINE``, reported when it is reached.
"""

from __future__ import annotations

import itertools
import os
import re
import select
import stat
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, TextIO, Tuple, Union

from accel._util.checksum import parse_checksum
from accel._util.urls import check_url
from accel.exceptions import UsageError
from accel.options import AUTO, MAX_CONNECTIONS, RESERVED_HEADERS

#: Seconds a pipe's writer may pause between a URL line and its option lines.
PIPE_PAUSE = 0.2
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: Option names of input lines, with the aria2 names that mean the same.
OPTIONS = ("out", "dir", "checksum", "header", "connections")
_ALIASES = {"split": "connections"}


@dataclass(frozen=True)
class Job:
    """One file to download: a URL and its mirrors (``where``: its place in the input), and
    the options of its input lines."""

    url: str
    mirrors: Tuple[str, ...] = ()
    where: str = ""
    out: Optional[str] = None
    dir: Optional[str] = None
    #: Per-file settings for :meth:`accel.Manager.add` (``checksum``, ``connections``).
    settings: Tuple[Tuple[str, Any], ...] = ()
    #: Headers added to the command's own for this file.
    headers: Tuple[Tuple[str, str], ...] = ()


#: A job, or the error of an input entry that is not one.
Entry = Union[Job, UsageError]


class JobList:
    """The downloads asked for, read lazily: URLs on the command line, then those of ``-i``.

    The command line and the first entries are checked at once (``-o`` and ``--mirror``
    need exactly one URL); a bad entry further down an input file is reported when reached
    and the others go on. ``expected`` is the number of entries, counted without keeping
    them (None when reading a pipe).
    """

    def __init__(self, args: Any, stdin: TextIO) -> None:
        head: List[Entry] = [Job(check_url(url)) for url in args.urls]
        self.expected: Optional[int] = len(head)
        lines: Iterator[Entry] = iter(())
        if args.input_file:
            lines = self._read(args.input_file, stdin)
        self._entries = itertools.chain(head, lines)
        # Only -o and --mirror need to know there is no second URL (a pipe is not waited for).
        first = list(itertools.islice(self._entries, 2 if args.output or args.mirror else 1))
        if not first:
            raise UsageError("no URL given (pass URLs or -i FILE)")
        for entry in first:
            if isinstance(entry, UsageError):
                raise entry
        if args.output and len(first) > 1:
            raise UsageError("-o/--output needs exactly one URL (use -d for several)")
        if args.mirror:
            if len(first) > 1:
                raise UsageError("--mirror needs exactly one URL (use tab-separated lines in -i)")
            job = first[0]
            assert isinstance(job, Job)
            mirrors = tuple(check_url(m) for m in args.mirror)
            first[0] = Job(job.url, job.mirrors + mirrors, job.where)
        self._entries = itertools.chain(first, self._entries)

    def _read(self, name: str, stdin: TextIO) -> Iterator[Entry]:
        try:
            stream = stdin if name == "-" else open(name, encoding="utf-8")  # noqa: SIM115
            if stream is not stdin and self.expected is not None:
                self.expected += _count_entries(name)
            else:
                self.expected = None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read input file {name}: {exc}") from None
        return parse(name, stream)

    def __iter__(self) -> Iterator[Entry]:
        return self._entries


def parse(name: str, stream: TextIO) -> Iterator[Entry]:
    """The entries of the input file ``name`` read from ``stream`` (closed at the end unless
    it is standard input, ``-``).

    A URL's option lines follow it, so an entry is complete when the next URL line comes. On
    a pipe that would hold a download back until its writer sends more: there an entry is
    complete as soon as no further line arrives within :data:`PIPE_PAUSE` seconds.
    """
    where = "stdin" if name == "-" else name
    lines = _Lines(stream)
    pending: Optional[_Pending] = None
    number = 0
    try:
        while True:
            if pending is not None and not lines.ready(PIPE_PAUSE):
                yield pending.entry()  # the writer paused: start it with what it has
                pending = None
            raw = lines.readline()
            if raw is None:
                break
            number += 1
            line = raw.rstrip("\r\n")
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if _is_option_line(line, text):  # an option line of the URL above
                if pending is None:
                    yield UsageError(
                        f"{where}:{number}: an option line needs its URL line right above it"
                    )
                elif pending.error is None:
                    pending.option(text, f"{where}:{number}")
                continue
            if pending is not None:
                yield pending.entry()
            pending = _Pending(text, f"{where}:{number}")
        if pending is not None:
            yield pending.entry()
    except (OSError, UnicodeDecodeError) as exc:
        yield UsageError(f"cannot read input file {where}: {exc}")
    finally:
        if name != "-":
            stream.close()


class _Lines:
    """Lines of an input stream, telling whether the next one is there without waiting.

    A regular file (or an in-memory stream) always has its next line at hand. A pipe or a
    terminal is read with ``os.read`` so that what is buffered is known exactly, and
    ``select`` tells whether more is on its way.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.fd: Optional[int] = None
        try:
            fd = stream.fileno()
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self.fd = fd
        except (AttributeError, OSError, ValueError):  # io.StringIO and the like
            pass
        self._buffer = b""
        self._eof = False

    def ready(self, timeout: float) -> bool:
        """Whether a next line (or the end) can be read within ``timeout`` seconds."""
        if self.fd is None or b"\n" in self._buffer or self._eof:
            return True
        readable, _, _ = select.select([self.fd], [], [], timeout)
        return bool(readable)

    def readline(self) -> Optional[str]:
        """The next line (with its newline), None at the end."""
        if self.fd is None:
            line = self.stream.readline()
            return line or None
        while b"\n" not in self._buffer and not self._eof:
            chunk = os.read(self.fd, 65536)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True
        if not self._buffer:
            return None
        head, sep, rest = self._buffer.partition(b"\n")
        self._buffer = rest
        return (head + sep).decode("utf-8")


def _is_option_line(line: str, text: str) -> bool:
    """Indented and not a URL (an indented URL line is taken as one, as accel always did)."""
    return line[:1] in (" ", "\t") and not _URL_START.match(text)


class _Pending:
    """A URL line and the option lines read after it so far."""

    def __init__(self, text: str, where: str) -> None:
        self.where = where
        self.error: Optional[UsageError] = None
        self.urls = [u.strip() for u in text.split("\t") if u.strip()]
        self.values: Dict[str, Any] = {}
        self.headers: List[Tuple[str, str]] = []
        try:
            for url in self.urls:
                check_url(url)
        except UsageError as exc:
            self.error = UsageError(f"{where}: {exc}")

    def option(self, text: str, where: str) -> None:
        """Take one option line (``where``: FILE:LINE); a bad one makes the entry an error."""
        key, sep, value = text.partition("=")
        key, value = key.strip().lower(), value.strip()
        key = _ALIASES.get(key, key)
        try:
            if not sep or key not in OPTIONS:
                raise UsageError(
                    f"unknown option line {text!r} (expected one of: "
                    f"{', '.join(o + '=' for o in OPTIONS)})"
                )
            if key == "header":
                self.headers.append(_header(value))
            elif key in self.values:
                raise UsageError(f"{key}= given twice for one URL")
            else:
                self.values[key] = _CHECKS[key](value)
        except UsageError as exc:
            self.error = UsageError(f"{where}: {exc}")

    def entry(self) -> Entry:
        """The job (or the first error found in its lines)."""
        if self.error is not None:
            return self.error
        settings = tuple(
            (k, self.values[k]) for k in ("checksum", "connections") if k in self.values
        )
        return Job(
            self.urls[0],
            tuple(self.urls[1:]),
            self.where,
            out=self.values.get("out"),
            dir=self.values.get("dir"),
            settings=settings,
            headers=tuple(self.headers),
        )


def _out(value: str) -> str:
    if (
        not value
        or value in (".", "..")
        or "/" in value
        or os.sep in value
        or (os.altsep is not None and os.altsep in value)
        or "\0" in value
    ):
        raise UsageError(f"out={value!r} must be a file name, not a path (use dir= for that)")
    return value


def _dir(value: str) -> str:
    if not value or "\0" in value:
        raise UsageError("dir= needs a directory")
    return value


def _connections(value: str) -> Union[int, str]:
    if value.lower() == AUTO:
        return AUTO
    if not value.isdigit() or not 1 <= int(value) <= MAX_CONNECTIONS:
        raise UsageError(f"connections={value!r} must be from 1 to {MAX_CONNECTIONS} or auto")
    return int(value)


def _header(value: str) -> Tuple[str, str]:
    name, sep, text = value.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \t"):
        raise UsageError(f"header={value!r} must be 'Name: value'")
    if name.lower() in RESERVED_HEADERS:
        raise UsageError(f"header {name} is set by accel itself")
    return name, text.strip()


_CHECKS: Dict[str, Any] = {
    "out": _out,
    "dir": _dir,
    "checksum": parse_checksum,
    "connections": _connections,
}


def _count_entries(name: str) -> int:
    """URL lines of ``name`` (not blank, not a comment, not an option line), none kept."""
    with open(name, encoding="utf-8") as f:
        return sum(
            1
            for line in f
            if line.strip()
            and not line.lstrip().startswith("#")
            and not _is_option_line(line, line.strip())
        )
