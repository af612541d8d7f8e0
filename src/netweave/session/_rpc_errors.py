"""RPC error codes on the wire and the errors they become on the caller's side.

=====  ====================  =============================================
code   meaning               raised at the caller as
=====  ====================  =============================================
1      handler failed        :class:`~netweave.errors.RemoteError`
2      no such method        :class:`~netweave.errors.MethodNotFound`
3      refused (admission)   :class:`~netweave.errors.Overloaded`
4      deadline passed       :class:`~netweave.errors.RemoteDeadlineExceeded`
5      cancelled by server   :class:`~netweave.errors.CallCancelled`
6      undecodable request   :class:`~netweave.errors.RemoteError` (code 6)
>=1000 the application's     :class:`~netweave.errors.RemoteError` (that code)
=====  ====================  =============================================
"""

from __future__ import annotations

from typing import Final

from ..errors import (
    CallCancelled,
    MethodNotFound,
    Overloaded,
    RemoteDeadlineExceeded,
    RemoteError,
)

__all__ = [
    "BAD_REQUEST",
    "CANCELLED",
    "DEADLINE_EXCEEDED",
    "INTERNAL",
    "METHOD_NOT_FOUND",
    "OVERLOADED",
    "remote_error",
]

INTERNAL: Final = 1
METHOD_NOT_FOUND: Final = 2
OVERLOADED: Final = 3
DEADLINE_EXCEEDED: Final = 4
CANCELLED: Final = 5
BAD_REQUEST: Final = 6

_BY_CODE: Final[dict[int, type[RemoteError]]] = {
    METHOD_NOT_FOUND: MethodNotFound,
    OVERLOADED: Overloaded,
    DEADLINE_EXCEEDED: RemoteDeadlineExceeded,
    CANCELLED: CallCancelled,
}


def remote_error(code: int, remote_type: str, message: str, method: str) -> RemoteError:
    """The error a caller sees for an ERROR frame."""
    kind = _BY_CODE.get(code, RemoteError)
    return kind(message, code=code, remote_type=remote_type, method=method)
