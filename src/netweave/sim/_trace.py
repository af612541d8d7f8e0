"""The simulator's trace: an observer that records events as canonical JSON lines and hashes them.

Rules of this file:

* One event is one line: ``{"event": kind, ...fields}`` with sorted keys and no
  spaces. Simulator events carry ``time_ns`` themselves; other events (a
  transport's ``connection_opened``) get ``time_ns`` from ``clock`` when one is
  given, so the whole line depends only on what happened and when.
* The hash is the SHA-256 of the lines, each followed by ``"\\n"``, in arrival
  order — the same as ``sha256sum`` of the JSON-lines file. It covers every
  event, also those that fell out of the bounded in-memory window.
* Memory is bounded: ``keep`` events stay in memory (``None``: none kept;
  stream to ``path`` instead, or as well).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Final, final

from ..errors import UsageError
from ..observe import Event
from ._events import NetEvent

__all__ = ["TraceRecorder", "canonical_line", "trace_hash"]


def canonical_line(event: Event, *, time_ns: int | None = None) -> str:
    """``event`` as one canonical JSON line (no newline).

    The same text as ``json.dumps({"event": kind, **fields}, sort_keys=True,
    separators=(",", ":"))``, built from a per-class layout. ``time_ns`` is
    added for events that do not carry their own.
    """
    stamp = time_ns is not None and not isinstance(event, NetEvent)
    cls = type(event)
    layout = _LAYOUTS.get((cls, stamp))
    if layout is None:
        layout = _LAYOUTS[(cls, stamp)] = _layout(event, stamp)
    parts = []
    for prefix, name in layout:
        if name is None:
            parts.append(prefix)
        elif name is _TIME:
            parts.append(prefix + str(time_ns))
        else:
            parts.append(prefix + _encode(getattr(event, name)))
    return "{" + ",".join(parts) + "}"


# The layout of a line: (text, field) pairs in key order; field None means the
# text is complete (the event kind), _TIME means the stamped time goes after it.
_TIME: Final = "\0time"
_LAYOUTS: dict[tuple[type, bool], list[tuple[str, str | None]]] = {}
_encode_str: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _layout(event: Event, stamp: bool) -> list[tuple[str, str | None]]:
    names = [field.name for field in dataclasses.fields(event)]
    entries: dict[str, tuple[str, str | None]] = {
        name: (f"{_encode_str(name)}:", name) for name in names
    }
    entries["event"] = (f'"event":{_encode_str(event.kind)}', None)
    if stamp:
        entries["time_ns"] = ('"time_ns":', _TIME)
    return [entries[key] for key in sorted(entries)]


def _encode(value: object) -> str:
    if type(value) is str:
        return _encode_str(value)
    if type(value) is int:
        return int.__repr__(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def trace_hash(events: Iterable[Event]) -> str:
    """The hex SHA-256 of ``events`` as canonical lines (as :class:`TraceRecorder` computes it)."""
    digest = hashlib.sha256()
    for event in events:
        digest.update(canonical_line(event).encode())
        digest.update(b"\n")
    return digest.hexdigest()


@final
class TraceRecorder:
    """An observer that keeps, hashes and optionally streams the trace.

    ``keep``: how many recent events to hold in memory (``None`` for none);
    ``path``: a file to stream JSON lines to as events arrive (closed by
    :meth:`close`); ``clock``: returns the virtual time in ns, to stamp events
    that carry no ``time_ns`` (``loop.time_ns``).
    """

    def __init__(
        self,
        *,
        keep: int | None = 100_000,
        path: str | Path | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if keep is not None and keep < 0:
            raise UsageError(f"keep must be >= 0 or None, got {keep!r}")
        self._records: deque[tuple[Event, str]] = deque(maxlen=keep or 0)
        self._keep = keep or 0
        self._clock = clock
        self._digest = hashlib.sha256()
        self._file: IO[str] | None = None
        if path is not None:
            self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        #: Events seen so far (kept in memory or not).
        self.count = 0

    def __call__(self, event: Event, /) -> None:
        clock = self._clock
        line = canonical_line(event, time_ns=None if clock is None else clock())
        data = line.encode()
        self._digest.update(data)
        self._digest.update(b"\n")
        self.count += 1
        if self._keep:
            self._records.append((event, line))
        if self._file is not None:
            self._file.write(line)
            self._file.write("\n")

    def hexdigest(self) -> str:
        """The trace hash so far: hex SHA-256 of every line, each ending in a newline."""
        return self._digest.copy().hexdigest()

    @property
    def events(self) -> list[Event]:
        """The events held in memory, oldest first."""
        return [event for event, _ in self._records]

    @property
    def lines(self) -> list[str]:
        """The canonical lines of the events held in memory, oldest first."""
        return [line for _, line in self._records]

    @property
    def dropped(self) -> int:
        """Events seen but no longer held in memory."""
        return self.count - len(self._records)

    def write_jsonl(self, target: str | Path | IO[str]) -> None:
        """Write the events held in memory as JSON lines.

        Raises ``UsageError`` if some events are no longer in memory (raise
        ``keep``, or stream with ``path=``): a partial file would not match the hash.
        """
        if self.dropped:
            raise UsageError(
                f"{self.dropped} of {self.count} trace events are no longer in memory; "
                "raise keep= or stream the trace with path="
            )
        text = "".join(line + "\n" for line in self.lines)
        if isinstance(target, str | Path):
            Path(target).write_text(text, encoding="utf-8")
        else:
            target.write(text)

    def close(self) -> None:
        """Close the streamed file, if any. Idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> TraceRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
