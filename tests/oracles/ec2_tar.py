"""The tar stream of an EC2 bundle, judged block by block as it streams past (ec2-unbundle).

ec2-bundle-image runs `tar -c -h -S --owner 0 --group 0` (GNU format) on one file, so the
stream must be: an optional ././@LongLink name record, one regular ('0') or GNU sparse ('S')
member with the manifest's name and size, owner 0/0, then only zero blocks. ec2-unbundle
feeds the decompressed stream here and passes bytes on to GNU tar only after this module
has judged them, so tar never sees a header that was refused.
"""

import re

MAX_LONG_NAME = 64 * 1024


def safe_name(name):
    """A plain file name: no directory part, not `.` or `..`, no NUL or control characters."""
    return (name not in ("", ".", "..") and "/" not in name
            and not any(ord(ch) < 32 for ch in name))


class TarProblem(Exception):
    pass


def tar_number(field, what, at):
    """A numeric header field: octal text, or GNU's base-256 (first byte 0x80)."""
    if field[0] == 0x80:
        return int.from_bytes(field[1:], "big")
    if field[0] & 0x80:
        raise TarProblem("header at byte %d: %s is a negative base-256 number" % (at, what))
    digits = field.replace(b"\0", b" ").strip(b" ")
    if not digits:
        return 0
    if not re.fullmatch(rb"[0-7]+", digits):
        raise TarProblem("header at byte %d: %s %r is not octal" % (at, what, bytes(field)))
    return int(digits, 8)


def header_checksum_ok(block, at):
    stored = tar_number(block[148:156], "the checksum", at)
    rest = block[:148] + b" " * 8 + block[156:]
    return stored in (sum(rest), sum(b - 256 if b > 127 else b for b in rest))


class TarWalker:
    """Follows the tar stream as it goes by, keeping only an unfinished header block.

    It expects what `tar -c -S --format=gnu` writes for one file: an optional ././@LongLink
    name record, one regular ('0') or GNU sparse ('S') member, then zero blocks to the end.
    `hold` is the tail it has not judged yet: only bytes before it may be passed on to tar."""

    def __init__(self, name, size):
        self.want_name, self.want_size = name, size
        self.hold = b""
        self.offset = 0      # stream offset of hold[0]
        self.skip = 0        # data bytes still to pass over
        self.need = 512      # bytes the next step reads
        self.step = self.header
        self.long_name = None
        self.member = None
        self.end_at = None   # offset of the first zero block
        self.sparse = None   # [runs, stored bytes, next free offset, real size]

    def feed(self, chunk):
        data = self.hold + chunk if self.hold else chunk
        view, pos, n = memoryview(data), 0, len(data)
        while pos < n:
            if self.skip:
                k = min(self.skip, n - pos)
                self.skip -= k
                pos += k
            elif self.end_at is not None:
                rest = data[pos:]
                nonzero = rest.lstrip(b"\0")
                if nonzero:
                    raise TarProblem("non-zero byte at %d after the end-of-archive block at %d"
                                     % (self.offset + n - len(nonzero), self.end_at))
                pos = n
            elif n - pos >= self.need:
                block = bytes(view[pos:pos + self.need])
                self.step(block, self.offset + pos)
                pos += len(block)
            else:
                break
        self.offset += pos
        self.hold = data[pos:]

    def header(self, block, at):
        if not any(block):
            if self.member is None:
                raise TarProblem("the archive ends at byte %d without a member" % at)
            self.end_at = at
            return
        if not header_checksum_ok(block, at):
            raise TarProblem("header at byte %d: checksum mismatch" % at)
        if block[257:265] != b"ustar  \0":
            raise TarProblem("header at byte %d: magic %r is not GNU tar's 'ustar  '"
                             % (at, block[257:265]))
        kind = block[156:157]
        size = tar_number(block[124:136], "the size", at)
        if kind == b"L":
            if self.long_name is not None or self.member is not None \
                    or not 0 < size <= MAX_LONG_NAME:
                raise TarProblem("unexpected ././@LongLink record at byte %d" % at)
            self.long_name = size
            self.need = -(-size // 512) * 512
            self.step = self.long_name_data
            return
        if kind not in (b"0", b"\0", b"S"):
            raise TarProblem("member at byte %d has type %r; a bundle holds one regular file"
                             % (at, kind.decode("latin-1")))
        if self.member is not None:
            raise TarProblem("a second member at byte %d; a bundle holds one file" % at)
        raw_name = block[:100].split(b"\0", 1)[0]
        name = self.long_name if isinstance(self.long_name, str) else \
            raw_name.decode("utf-8", "surrogateescape")
        if not safe_name(name) or name != self.want_name:
            raise TarProblem("the member is named %r, the manifest's <name> is %r"
                             % (name, self.want_name))
        uid = tar_number(block[108:116], "the uid", at)
        gid = tar_number(block[116:124], "the gid", at)
        if (uid, gid) != (0, 0):
            raise TarProblem("the member's owner is %d/%d; ec2-bundle-image writes 0/0"
                             % (uid, gid))
        self.member = {"name": name, "stored": size, "sparse": kind == b"S", "runs": 0}
        real = size
        if kind == b"S":
            real = tar_number(block[483:495], "the real size", at)
            self.sparse = [0, 0, 0, real]
            self.sparse_entries(block[386:482], 4, at)
        if real != self.want_size:
            raise TarProblem("the member holds %d bytes, the manifest's <size> is %d"
                             % (real, self.want_size))
        self.member["size"] = real
        if kind == b"S" and block[482]:
            self.step = self.sparse_extension
        else:
            self.member_data()

    def long_name_data(self, block, at):
        name = block[:self.long_name].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        if name != self.want_name:
            raise TarProblem("the member is named %r (long name at byte %d), the manifest's "
                             "<name> is %r" % (name, at, self.want_name))
        self.long_name = name
        self.need, self.step = 512, self.header

    def sparse_entries(self, area, count, at):
        """Checks GNU sparse map entries: ascending, inside the file, adding up to the data."""
        for i in range(count):
            e = area[i * 24:(i + 1) * 24]
            if not any(e):
                continue
            off = tar_number(e[:12], "a sparse offset", at)
            length = tar_number(e[12:], "a sparse length", at)
            if off < self.sparse[2] or off + length > self.sparse[3]:
                raise TarProblem("sparse run %d+%d at byte %d overlaps or leaves the file"
                                 % (off, length, at))
            self.sparse[0] += 1
            self.sparse[1] += length
            self.sparse[2] = off + length

    def sparse_extension(self, block, at):
        self.sparse_entries(block[:504], 21, at)
        if not block[504]:
            self.need, self.step = 512, self.header
            self.member_data()

    def member_data(self):
        if self.sparse is not None:
            if self.sparse[1] != self.member["stored"]:
                raise TarProblem("the sparse map holds %d bytes, the header says %d"
                                 % (self.sparse[1], self.member["stored"]))
            self.member["runs"] = self.sparse[0]
        self.skip = -(-self.member["stored"] // 512) * 512
        self.need, self.step = 512, self.header

    def finish(self):
        if self.end_at is None or self.skip or self.hold:
            at = self.offset + len(self.hold)
            raise TarProblem("the archive is truncated at byte %d" % at)
        if self.offset - self.end_at < 1024 or self.offset % 512:
            raise TarProblem("the archive does not end with two zero blocks")
        return self.member
