"""The receiving half of a TCP connection: reassembly within the window.

Rules of this file: bytes become *ready* (for the application) strictly in
sequence order; segments ahead of a hole wait, within the window only, so
memory stays bounded by the window; overlapping and repeated segments are
trimmed, never delivered twice. The window is the free room of the buffer,
and its right edge never moves left (what was offered stays acceptable).
"""

from __future__ import annotations

from typing import Final, final

__all__ = ["FILLED", "FIN", "IN_ORDER", "NOTHING_NEW", "OUT_OF_ORDER", "ReceiveBuffer"]

#: Outcomes of :meth:`ReceiveBuffer.add`.
NOTHING_NEW: Final = 0  # old, repeated or outside the window: repeat the ACK
OUT_OF_ORDER: Final = 1  # kept behind a hole: a duplicate ACK tells the sender
IN_ORDER: Final = 2  # new bytes are ready
FILLED: Final = 3  # new bytes are ready and a hole was filled: ACK at once
FIN: Final = 4  # the peer's FIN was reached: everything before it is ready


@final
class ReceiveBuffer:
    """In-order bytes ready for the application, segments waiting behind holes, the FIN."""

    __slots__ = ("_ready", "cap", "fin_received", "fin_seq", "nxt", "ooo", "ready_len")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        #: The next sequence number expected (what an ACK acknowledges).
        self.nxt = 0
        self._ready: list[bytes] = []
        self.ready_len = 0
        #: Segments held behind a hole, by sequence number (read them, never change them).
        self.ooo: dict[int, bytes] = {}
        self.fin_seq = -1
        self.fin_received = False

    def window(self, mss: int) -> int:
        """The window to advertise: the free room, or 0 while it is under an MSS
        (and under half the buffer), so the sender does not trickle slivers."""
        free = self.cap - self.ready_len
        return free if free >= min(mss, self.cap // 2) else 0

    def take(self) -> bytes:
        """All ready bytes (``b""`` if none)."""
        ready = self._ready
        if not ready:
            return b""
        data = ready[0] if len(ready) == 1 else b"".join(ready)
        ready.clear()
        self.ready_len = 0
        return data

    def add(self, seq: int, data: bytes, fin: bool) -> int:
        """Take in a segment carrying ``data`` at ``seq`` (and a FIN after it if ``fin``)."""
        if self.fin_received:
            return NOTHING_NEW
        nxt = self.nxt
        end = seq + len(data)
        if end < nxt or (end == nxt and not fin):
            return NOTHING_NEW
        max_end = nxt + self.cap - self.ready_len
        if seq > max_end or (seq == max_end and data):
            return NOTHING_NEW
        if seq < nxt:
            data = data[nxt - seq :]
            seq = nxt
        if seq + len(data) > max_end:
            data = data[: max_end - seq]
            fin = False  # the FIN lies beyond what fits
        if fin:
            self.fin_seq = seq + len(data)
        if seq != nxt:
            if data:
                present = self.ooo.get(seq)
                if present is None or len(present) < len(data):
                    self.ooo[seq] = data
            return OUT_OF_ORDER
        filled = bool(self.ooo)
        if data:
            self._ready.append(data)
            self.ready_len += len(data)
            nxt += len(data)
        if self.ooo:
            nxt = self._drain(nxt)
        self.nxt = nxt
        if self.fin_seq >= 0 and nxt == self.fin_seq:
            self.nxt = nxt + 1
            self.fin_received = True
            return FIN
        return FILLED if filled else IN_ORDER

    def _drain(self, nxt: int) -> int:
        ooo = self.ooo
        progress = True
        while progress and ooo:
            progress = False
            for seq in sorted(ooo):
                if seq > nxt:
                    break
                data = ooo.pop(seq)
                if seq + len(data) > nxt:
                    chunk = data[nxt - seq :]
                    self._ready.append(chunk)
                    self.ready_len += len(chunk)
                    nxt += len(chunk)
                    progress = True
        return nxt

    def sack_blocks(self, limit: int = 3) -> tuple[tuple[int, int], ...]:
        """Up to ``limit`` ``(start, end)`` ranges held behind holes, lowest first."""
        blocks: list[tuple[int, int]] = []
        for seq in sorted(self.ooo):
            end = seq + len(self.ooo[seq])
            if blocks and seq <= blocks[-1][1]:
                if end > blocks[-1][1]:
                    blocks[-1] = (blocks[-1][0], end)
            elif len(blocks) == limit:
                break
            else:
                blocks.append((seq, end))
        return tuple(blocks)

    @property
    def holding(self) -> bool:
        """Whether segments wait behind a hole (ACKs then carry SACK blocks)."""
        return bool(self.ooo)

    def clear(self) -> None:
        """Drop everything held (the connection is over)."""
        self.ooo.clear()
        self._ready.clear()
        self.ready_len = 0
