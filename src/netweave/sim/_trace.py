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
* Cheap per event: each event class gets a generated line function (made once
  from its fields); the network hands packet events over as field values
  (:meth:`TraceRecorder.record`), whose objects are rebuilt from their lines
  only if :attr:`TraceRecorder.events` is read; lines are hashed in batches,
  which gives the same hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import operator
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, final

from ..errors import UsageError
from ..observe import Event
from ._events import NetEvent

__all__ = ["TraceRecorder", "canonical_line", "trace_hash"]

_BATCH: Final = 256  # lines hashed (and streamed) at a time


def canonical_line(event: Event, *, time_ns: int | None = None) -> str:
    """``event`` as one canonical JSON line (no newline).

    The same text as ``json.dumps({"event": kind, **fields}, sort_keys=True,
    separators=(",", ":"))``, built by a line function made once per event class.
    ``time_ns`` is added for events that do not carry their own.
    """
    stamp = time_ns is not None and not isinstance(event, NetEvent)
    layout = _LAYOUTS.get((type(event), stamp))
    if layout is None:
        layout = _layout(event, stamp)
    return layout[1](layout[0](event), time_ns)


#: A line function: the event's field values (in field order) and the stamp, to the line.
_Line = Callable[[tuple[Any, ...], "int | None"], str]
#: Per (event class, stamped): how to read the field values, and the line function.
_LAYOUTS: dict[tuple[type, bool], tuple[Callable[[Any], tuple[Any, ...]], _Line]] = {}
_encode_str: Callable[[str], str] = json.encoder.encode_basestring_ascii


def _layout(event: Event, stamp: bool) -> tuple[Callable[[Any], tuple[Any, ...]], _Line]:
    """Make (and remember) the layout of ``event``'s class, from ``event`` itself."""
    names = [field.name for field in dataclasses.fields(event)]
    getter: Callable[[Any], tuple[Any, ...]]
    if len(names) == 1:
        name = names[0]

        def getter(event: Any) -> tuple[Any, ...]:
            return (getattr(event, name),)

    else:
        getter = operator.attrgetter(*names)
    layout = (getter, _line_function(names, event.kind, stamp))
    _LAYOUTS[(type(event), stamp)] = layout
    return layout


def _line_function(
    names: list[str], kind: str, stamp: bool, types: dict[str, str] | None = None
) -> _Line:
    """Generate the straight-line code that joins one class's line, keys sorted.

    Each value is encoded as :func:`_encode` would (str and int inline, anything
    else through ``json.dumps``); with ``types`` (field name to declared type), a
    field declared ``str`` or ``int`` is encoded as one without looking. The
    generated text holds only ``repr``'d constants and field indexes, never data.
    """
    entries: dict[str, str | None] = {name: f"v[{i}]" for i, name in enumerate(names)}
    entries["event"] = None
    if stamp:
        entries["time_ns"] = "t"
    parts: list[str] = []
    text = "{"
    for n, key in enumerate(sorted(entries)):
        text += ("," if n else "") + _encode_str(key) + ":"
        value = entries[key]
        if value is None:
            text += _encode_str(kind)
            continue
        parts.append(repr(text))
        text = ""
        declared = None if types is None else types.get(key)
        if value == "t":
            parts.append("str(t)")
        elif declared == "str":
            parts.append(f"S({value})")
        elif declared == "int":
            parts.append(f"R({value})")
        else:
            parts.append(
                f"(S(x) if type(x := {value}) is str else R(x) if type(x) is int else E(x))"
            )
    parts.append(repr(text + "}"))
    source = f"def line(v, t):\n    return ''.join(({', '.join(parts)},))\n"
    namespace: dict[str, Any] = {"S": _encode_str, "R": int.__repr__, "E": _encode}
    exec(source, namespace)  # generated from field names only, see above
    line: _Line = namespace["line"]
    return line


def _encode(value: object) -> str:
    if type(value) is str:
        return _encode_str(value)
    if type(value) is int:
        return int.__repr__(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _typed_line_function(event: Event) -> _Line:
    """The line function of ``event``'s class for values of the declared types."""
    fields = dataclasses.fields(event)
    types = {field.name: str(field.type) for field in fields}
    return _line_function([field.name for field in fields], event.kind, False, types)


def _rebuild(kind: type[Event], line: str) -> Event:
    """The event of class ``kind`` that :meth:`TraceRecorder.record` made ``line`` of."""
    fields = json.loads(line)
    del fields["event"]
    return kind(**fields)


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
        # Two deques side by side (no tuple per event: less for the garbage collector to
        # walk): each event, or just its class when its line is enough to rebuild it, and
        # its line.
        self._items: deque[Event | type[Event]] = deque(maxlen=keep or 0)
        self._kept: deque[str] = deque(maxlen=keep or 0)
        self._keep = keep or 0
        self._clock = clock
        self._digest = hashlib.sha256()
        # Lines not yet hashed: hashing them in batches gives the same hash.
        self._pending: list[str] = []
        self._lines: dict[type[Event], _Line] = {}
        self._file: IO[str] | None = None
        if path is not None:
            self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        #: Events seen so far (kept in memory or not).
        self.count = 0

    def __call__(self, event: Event, /) -> None:
        clock = self._clock
        line = canonical_line(event, time_ns=None if clock is None else clock())
        self.count += 1
        if self._keep:
            self._items.append(event)
            self._kept.append(line)
        if self._file is not None:
            self._file.write(line + "\n")
        pending = self._pending
        pending.append(line)
        if len(pending) >= _BATCH:
            self._drain()

    def record(self, kind: type[NetEvent], values: tuple[Any, ...]) -> None:
        """Record the event ``kind(*values)`` (field values in field order) without
        building it: the line and the hash are the same as for ``self(kind(*values))``,
        and the event is built from its line only when :attr:`events` is read. The
        simulator's per-packet path uses this; ``kind`` is a simulator event (it carries
        its time) and ``values`` are ``str`` and ``int``, as its fields are declared.
        """
        line_of = self._lines.get(kind)
        if line_of is None:
            line_of = self._lines[kind] = _typed_line_function(kind(*values))
        line = line_of(values, None)
        self.count += 1
        if self._keep:
            self._items.append(kind)
            self._kept.append(line)
        if self._file is not None:
            self._file.write(line + "\n")
        pending = self._pending
        pending.append(line)
        if len(pending) >= _BATCH:
            self._drain()

    def _drain(self) -> None:
        """Hash the pending lines."""
        pending = self._pending
        if not pending:
            return
        pending.append("")  # the last line ends in a newline too
        text = "\n".join(pending)
        pending.clear()
        self._digest.update(text.encode())

    def hexdigest(self) -> str:
        """The trace hash so far: hex SHA-256 of every line, each ending in a newline."""
        self._drain()
        return self._digest.copy().hexdigest()

    @property
    def events(self) -> list[Event]:
        """The events held in memory, oldest first."""
        return [
            item if isinstance(item, Event) else _rebuild(item, line)
            for item, line in zip(self._items, self._kept, strict=True)
        ]

    @property
    def lines(self) -> list[str]:
        """The canonical lines of the events held in memory, oldest first."""
        return list(self._kept)

    @property
    def dropped(self) -> int:
        """Events seen but no longer held in memory."""
        return self.count - len(self._kept)

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
