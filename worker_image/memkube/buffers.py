"""Fresh memory for bytes that arrive: bodies read off a socket and ranges read back from
spill files.

Faulting in fresh memory page by page costs more than copying into it: on the 2-core
machine of ``bench/``, filling 192 MiB of new ``bytearray`` takes 170 ms, of which the copy
is 43 ms (``bench/FINDINGS.md`` F13). Large buffers are therefore private anonymous
mappings advised for transparent huge pages (``MADV_HUGEPAGE``), one fault per 2 MiB:
63 ms for the same fill where the kernel offers them on request (``enabled`` is ``always``
or ``madvise``, the common default). Where it does not, the advice is a no-op and the
buffer behaves as a ``bytearray``.

The mapping must be private: Python's ``mmap.mmap(-1, n)`` is shared by default, which is
shmem, and shmem takes huge pages only when ``shmem_enabled`` says so (``never`` by
default).
"""

from __future__ import annotations

import mmap

#: From this size a buffer is a huge-page-advised mapping (a huge page is 2 MiB: smaller
#: buffers could not use one, and malloc serves them from memory already faulted in).
HUGE_FROM = 2 * 2**20

_PRIVATE = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)


def anonymous(nbytes: int) -> mmap.mmap:
    """``nbytes`` of zeroed, page-aligned, private, writable memory (a mapping), advised for
    huge pages when large. ``nbytes`` must be positive."""
    buf = mmap.mmap(-1, nbytes, flags=_PRIVATE) if _PRIVATE else mmap.mmap(-1, nbytes)
    if nbytes >= HUGE_FROM and _HUGEPAGE is not None:
        buf.madvise(_HUGEPAGE)
    return buf


def fresh(nbytes: int) -> bytearray | mmap.mmap:
    """A writable buffer of ``nbytes`` zeroed bytes to receive into: a ``bytearray`` when
    small, else :func:`anonymous`."""
    if nbytes < HUGE_FROM:
        return bytearray(nbytes)
    return anonymous(nbytes)
