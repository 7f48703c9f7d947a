"""Intake: what a class handed in, read file by file from a folder or an LMS zip, and whose it is.

Every name and byte of an upload is the students' input, so intake

* never unpacks anything: a zip is read member by member, straight from the archive, and only the
  notebooks about to be graded are read, through a size limit, into memory;
* judges each member on its own: an unsafe one (absolute path, ``..``, a link, a device, an
  encrypted member) or one too large is noted on the student it belongs to, and the rest is graded;
* never merges two students: a student is the LMS's own id where the file name carries one
  (Canvas, Moodle, Blackboard), else the name as given (Unicode, NFC); their file-system-safe id
  is derived from that identity alone, and recorded so that it is never given to anyone else.

The LMS formats recognised (each file or folder name, as the LMS writes it):

| LMS        | name                                                                   | student id from   |
| ---------- | ---------------------------------------------------------------------- | ----------------- |
| Canvas     | ``name[_LATE]_userid_submissionid_original.ipynb``                     | ``userid``        |
| Moodle     | folder ``Full Name_12345_assignsubmission_file_`` (or that prefix on each file) | ``12345`` |
| Blackboard | ``Assignment_username_attempt_YYYY-MM-DD-hh-mm-ss[_LATE]_original.ipynb`` | ``username``   |
| plain      | ``name_01_pair_dataset.ipynb``, or a folder per student                | the name          |
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .. import syllabus

MB = 1024 * 1024
NOTEBOOK_LIMIT_MB = 20  # a lesson notebook with its outputs is well under 1 MB
STUDENT_LIMIT_MB = 100  # one student's notebooks together
ARCHIVE_LIMIT_MB = 4096  # the zip file itself
ARCHIVE_MEMBER_LIMIT = 50_000  # members of one zip
BLACKBOARD_INFO_LIMIT = 64 * 1024  # Blackboard's attempt .txt files are a few hundred bytes

# Files that operating systems and editors add, never a student's work.
JUNK = re.compile(r"^(__MACOSX|\.DS_Store|\._.*|\.ipynb_checkpoints|Thumbs\.db|desktop\.ini)$", re.IGNORECASE)
BROWSER_SUFFIX = re.compile(r"\s*\(\d+\)$")  # "name (1).ipynb" from repeated downloads
COPY_PREFIX = re.compile(r"copy of\s+", re.IGNORECASE)  # Colab's "Copy of name.ipynb"
# The LMS writes its part first and the student's file name last, so every name part is matched
# lazily: a student who puts "x_777_assignsubmission_file_" in their own file name stays themselves.
CANVAS = re.compile(
    r"^(?P<name>.+?)(?P<late>_LATE)?_(?P<user>\d{3,})_(?P<submission>\d{3,})_(?P<original>.+)$"
)
MOODLE = re.compile(r"^(?P<name>.+?)_(?P<user>\d+)_assignsubmission_(?:file|onlinetext)_(?P<original>.*)$")
BLACKBOARD = re.compile(
    r"^(?P<assignment>.*?)_(?P<user>[^_]+)_attempt_(?P<stamp>\d{4}(?:-\d\d){5})"
    r"(?P<late>_LATE)?(?:_(?P<original>.+)|(?P<info>\.txt))?$",
    re.IGNORECASE,
)
PLAIN_ID = re.compile(
    r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$"
)  # ids kept as they are: never "__", never a dot first
RESERVED_ID = re.compile(
    r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE
)  # names Windows cannot hold
ID_FOLD_LENGTH = 40


class IntakeError(ValueError):
    """The submissions as a whole cannot be read (not a zip or folder, an archive over its limits)."""


# ---------------------------------------------------------------- one file handed in


@dataclass
class Upload:
    """One file of the submissions: its path inside them (text only, never a path we write to), size and time."""

    parts: tuple[str, ...]
    size: int
    mtime: float
    fingerprint: str  # identifies the file's version without reading it (size, CRC or time)
    problem: str | None = None  # why it cannot be used at all
    path: Path | None = None  # on disk, for a folder of submissions
    member: zipfile.ZipInfo | None = None  # in the archive, for a zip
    name: str = ""  # the member's name exactly as the archive gives it

    @property
    def shown(self) -> str:
        """The path inside the submissions, printable whatever characters it holds."""
        return printable(self.name or "/".join(self.parts))


def printable(text: str) -> str:
    """Text safe to show on a terminal or in a table: control characters (escape sequences) written as escapes."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class TooLarge(Exception):
    """A file over its size limit (found while reading it, or from its declared size)."""


class Submissions:
    """The files of a folder or a zip; ``read`` gives one file's bytes through a size limit."""

    def __init__(self, location: Path, archive_limit_mb: int = ARCHIVE_LIMIT_MB):
        self.location = location
        self.archive: zipfile.ZipFile | None = None
        if location.is_dir():
            self.uploads = list(_walk_folder(location))
        elif location.is_file():
            self.archive = _open_archive(location, archive_limit_mb)
            self.uploads = [_zip_upload(info) for info in self.archive.infolist() if not info.is_dir()]
        else:
            raise FileNotFoundError(f"{location} is neither a folder nor a zip file of submissions")

    def read(self, upload: Upload, limit_bytes: int) -> bytes:
        """The file's bytes; ``TooLarge`` as soon as more than ``limit_bytes`` arrive, whatever its header says."""
        if upload.size > limit_bytes:
            raise TooLarge(upload.size)
        if upload.member is not None:
            assert self.archive is not None
            stream: BinaryIO = self.archive.open(upload.member)
        else:
            assert upload.path is not None
            # Never through a link, and never waiting on a pipe put where the file was.
            flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
            stream = open(os.open(upload.path, flags), "rb")  # noqa: SIM115 (closed by the `with` below)
        with stream:
            data = stream.read(limit_bytes + 1)
        if len(data) > limit_bytes:
            raise TooLarge(len(data))
        return data

    def close(self) -> None:
        """Close the archive, if any."""
        if self.archive is not None:
            self.archive.close()


def _open_archive(location: Path, limit_mb: int) -> zipfile.ZipFile:
    """The zip, checked as a whole before any member is read."""
    size = location.stat().st_size
    if size > limit_mb * MB:
        raise IntakeError(
            f"{location} is {size / MB:.0f} MB, over the limit of {limit_mb} MB for one archive; "
            "split it, or raise --max-archive-mb"
        )
    try:
        archive = zipfile.ZipFile(location)
    except Exception as error:  # not a zip, truncated, a name that breaks its own encoding flag
        raise IntakeError(
            f"{location} is not a readable zip file ({error}); download it from the LMS again, "
            "or give the folder of submissions"
        ) from None
    count = len(archive.infolist())
    if count > ARCHIVE_MEMBER_LIMIT:
        archive.close()
        raise IntakeError(
            f"{location} holds {count} files, over the limit of {ARCHIVE_MEMBER_LIMIT} for one archive"
        )
    return archive


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's name as its author wrote it: zips without the UTF-8 flag are often UTF-8 all the same."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except UnicodeError:
        return info.filename


def _zip_upload(info: zipfile.ZipInfo) -> Upload:
    """One member of the archive, with the reason it cannot be used, if any."""
    name = _member_name(info)
    parts = tuple(p for p in re.split(r"[/\\]", name) if p not in ("", "."))
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 where the zip does not say (Windows tools, writestr)
    problem = None
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        problem = "unsafe name in the archive (an absolute path)"
    elif ".." in parts:
        problem = "unsafe name in the archive (a path through '..')"
    elif "\0" in name:
        problem = "unsafe name in the archive (a NUL character)"
    elif kind == stat.S_IFLNK:
        problem = "a link in the archive, not a file"
    elif kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        problem = "a special file (device, pipe or socket) in the archive"
    elif info.flag_bits & 0x1:
        problem = "an encrypted member of the archive"
    stamp = _zip_time(info)
    return Upload(
        parts or (name,),
        info.file_size,
        stamp,
        f"size={info.file_size};crc={info.CRC:08x};time={stamp:.0f}",
        problem,
        member=info,
        name=name,
    )


def _zip_time(info: zipfile.ZipInfo) -> float:
    import datetime as dt

    try:
        return dt.datetime(*info.date_time).timestamp()
    except (ValueError, OverflowError):
        return 0.0


def _walk_folder(root: Path):
    """Every file under ``root``, without following links; links, special files and unreadable folders with
    their problem."""
    unreadable: list[OSError] = []
    for folder, dirs, files in os.walk(root, onerror=unreadable.append, followlinks=False):
        here = Path(folder)
        for name in sorted(dirs):
            if (here / name).is_symlink():
                yield _folder_upload(root, here / name, "a link, not a file")
        dirs[:] = sorted(d for d in dirs if not (here / d).is_symlink())
        for name in sorted(files):
            path = here / name
            info = path.lstat()
            problem = None
            if stat.S_ISLNK(info.st_mode):
                problem = "a link, not a file"
            elif not stat.S_ISREG(info.st_mode):
                problem = "a special file (device, pipe or socket)"
            yield _folder_upload(root, path, problem, info)
    for error in unreadable:  # a folder that cannot be listed is reported, never silently passed over
        path = Path(error.filename)
        yield Upload(
            path.relative_to(root).parts or (path.name,),
            0,
            0.0,
            "unreadable",
            f"a folder that cannot be read ({error.strerror})",
            path=path,
        )


def _folder_upload(root: Path, path: Path, problem: str | None, info: os.stat_result | None = None) -> Upload:
    info = info or path.lstat()
    return Upload(
        path.relative_to(root).parts,
        info.st_size,
        info.st_mtime,
        f"size={info.st_size};mtime_ns={info.st_mtime_ns}",
        problem,
        path=path,
    )


# ---------------------------------------------------------------- whose file, for which lesson


def identify_lesson(filename: str) -> str | None:
    """The lesson a file name refers to, tolerating "Copy of " and " (1)"; ``None`` if none."""
    stem = BROWSER_SUFFIX.sub("", Path(filename).stem).lower()
    for lesson in syllabus.NAMES:
        if lesson in stem:
            return lesson
    for lesson in syllabus.NAMES:  # "pair_dataset.ipynb" without the number
        if lesson[3:] in stem:
            return lesson
    return None


def student_prefix(filename: str, lesson: str) -> str:
    """The student part of a flat file name like ``alice_Copy of 01_pair_dataset (1).ipynb``, as written."""
    stem = BROWSER_SUFFIX.sub("", Path(filename).stem)
    at = stem.lower().find(lesson)
    if at < 0:
        at = stem.lower().find(lesson[3:])
    prefix = COPY_PREFIX.sub("", stem[:at]) if at >= 0 else stem
    return re.sub(
        r"[\s_-]+$", "", prefix
    ).lstrip()  # the separator before the lesson; leading dots are the name's


def nfc(text: str) -> str:
    """Unicode NFC with surrounding white space removed: one spelling of every name, never two names merged."""
    # Bytes that are not UTF-8 (a folder named in Latin-1) stay distinct: each becomes U+FFFD and its hex value.
    text = re.sub("[\udc80-\udcff]", lambda m: f"\ufffd{ord(m.group()) - 0xDC00:02x}", text)
    return unicodedata.normalize("NFC", text).strip()


@dataclass(frozen=True)
class Owner:
    """Whose file: a stable identity (``canvas:123``, ``name:Zoë``), the name to show, and what the LMS said."""

    key: str
    name: str
    late: bool = False
    stamp: str = ""  # the LMS's submission time, where the name carries one (sorts as time)
    original: str = ""  # the file name the student uploaded


def owner_from_file_name(filename: str) -> Owner | None:
    """The owner of a flat file from its name alone (an LMS format, or ``name_lesson.ipynb``); ``None`` if unknown."""
    if match := CANVAS.match(filename):
        return Owner(
            f"canvas:{match['user']}", nfc(match["name"]), bool(match["late"]), original=match["original"]
        )
    if match := MOODLE.match(filename):
        return Owner(f"moodle:{match['user']}", nfc(match["name"]), original=match["original"])
    if match := BLACKBOARD.match(filename):
        return Owner(
            f"blackboard:{nfc(match['user'])}",
            nfc(match["user"]),
            bool(match["late"]),
            match["stamp"],
            match["original"] or "",
        )
    lesson = identify_lesson(filename)
    prefix = nfc(student_prefix(filename, lesson)) if lesson else ""
    return Owner(f"name:{prefix}", prefix, original=filename) if prefix else None


def owner_from_folder(folder: str) -> Owner:
    """The owner of everything in a student's folder (Moodle's ``Full Name_12345_assignsubmission_file_`` or a name)."""
    if match := MOODLE.match(folder):
        return Owner(f"moodle:{match['user']}", nfc(match["name"]))
    return Owner(f"name:{nfc(folder)}", nfc(folder))


# ---------------------------------------------------------------- student ids


def fold(name: str) -> str:
    """ASCII letters, digits and single underscores from a name: ``Zoë Åberg`` → ``Zoe_Aberg``."""
    ascii_text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]+", "_", ascii_text).strip("_")[:ID_FOLD_LENGTH].strip("_")


def derived_id(key: str, long: bool = False) -> str:
    """The file-system-safe id of an identity: itself where it is plain ASCII, else its fold with a hash of it.

    A plain id never contains ``__``, a hashed one always does, so the two kinds never meet.
    """
    kind, _, value = key.partition(":")
    readable = value if kind == "name" else f"{kind}-{value}"
    if (
        PLAIN_ID.match(readable)
        and not RESERVED_ID.match(readable)
        and len(readable) <= ID_FOLD_LENGTH
        and not long
    ):
        return readable
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{fold(readable) or 'student'}__{digest if long else digest[:10]}"


@dataclass(frozen=True)
class Shard:
    """One of ``count`` parts of a class, graded on a machine of its own: the students whose identity hashes to
    ``index`` (from 0). The hash is of the identity alone, so adding students moves no one, and every machine agrees
    without asking the others or the ids a run assigns."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` with 0 <= K < N; a ``ValueError`` saying what is expected otherwise."""
        index, slash, count = text.partition("/")
        if not (slash and index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
            raise ValueError(
                f"--shard takes K/N with 0 <= K < N (shard K of N, counted from 0), got {text!r}"
            )
        return cls(int(index), int(count))

    def holds(self, key: str) -> bool:
        """Whether the student of identity ``key`` is graded in this shard."""
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index


def assign_ids(keys: list[str], registry: dict[str, str]) -> dict[str, str]:
    """Give each identity an id: the one recorded for it (``registry``: id → key), else a new one no one holds."""
    known = {key: sid for sid, key in registry.items()}
    taken = {held.casefold() for held in registry}  # "Alice" and "alice" are one folder on some file systems
    for key in sorted(set(keys) - set(known)):
        sid = derived_id(key)
        if sid.casefold() in taken:  # held by another identity (a hash prefix met): the full hash is unique
            sid = derived_id(key, long=True)
        if sid.casefold() in taken:
            raise RuntimeError(f"two identities share the student id {sid}: {registry[sid]!r} and {key!r}")
        registry[sid] = key
        known[key] = sid
        taken.add(sid.casefold())
    return {key: known[key] for key in keys}


# ---------------------------------------------------------------- the class, student by student


@dataclass
class Candidate:
    """A file that may be a student's notebook for one lesson."""

    upload: Upload
    owner: Owner

    def order(self) -> tuple:
        """Newest last: the LMS's time where there is one, else the file's."""
        return (self.owner.stamp, self.upload.mtime, self.upload.shown)


@dataclass
class Student:
    """Everything intake found of one student."""

    key: str
    name: str
    files: dict[str, list[Candidate]] = field(default_factory=dict)  # lesson → candidate files
    notes: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(
        default_factory=dict
    )  # lesson → why nothing can be graded (too large, ...)


@dataclass
class ClassIntake:
    """The students found, and what belongs to no student (for ``intake.csv``)."""

    students: dict[str, Student]  # identity key → student
    unowned: list[tuple[str, str]]  # (path inside the submissions, what happened to it)


def strip_wrapper(uploads: list[Upload]) -> int:
    """How many top folders wrap the whole class (``submissions/alice/...``): folders, not students."""
    depth = 0
    while True:
        tops = {u.parts[depth] for u in uploads if len(u.parts) > depth + 1}
        flat = [u for u in uploads if len(u.parts) == depth + 1]
        if len(tops) != 1 or flat:
            return depth
        top = tops.pop()
        inside = [u.parts[depth + 1] for u in uploads if len(u.parts) == depth + 2]
        # A student's own folder holds notebooks named after the lesson alone; a wrapper holds names with owners.
        if MOODLE.match(top) or any(identify_lesson(n) and owner_from_file_name(n) is None for n in inside):
            return depth
        depth += 1


def gather(submissions: Submissions) -> ClassIntake:
    """Sort every upload into its student's files, notes and problems."""
    uploads = [u for u in submissions.uploads if not any(JUNK.match(p) for p in u.parts)]
    depth = strip_wrapper([u for u in uploads if u.problem is None])
    students: dict[str, Student] = {}
    unowned: list[tuple[str, str]] = []
    infos = [
        u
        for u in uploads
        if u.problem is None and len(u.parts) == depth + 1 and is_blackboard_info(u.parts[-1])
    ]
    names = blackboard_names(submissions, infos)
    for upload in uploads:
        # A name that climbs out of the archive says nothing about folders: only its file name is read.
        unsafe_path = upload.problem is not None and upload.problem.startswith("unsafe name")
        parts = upload.parts[-1:] if unsafe_path else (upload.parts[depth:] or upload.parts[-1:])
        try:
            place(upload, parts, students, unowned, names)
        except Exception as error:  # never let one file stop the class, nor lose its student
            fallback = fallback_owner(parts)
            student = students.setdefault(fallback.key, Student(fallback.key, fallback.name))
            student.notes.append(
                f"skipped {upload.shown}: it could not be read ({type(error).__name__}: {error})"
            )
    return ClassIntake(students, unowned)


def fallback_owner(parts: tuple[str, ...]) -> Owner:
    """Whose file, when reading it failed: the plain name before the lesson, else the first part of its path."""
    try:
        lesson = identify_lesson(parts[0]) if len(parts) == 1 else None
        name = nfc(student_prefix(parts[0], lesson)) if lesson else ""
    except Exception:
        name = ""
    name = name or nfc(parts[0])
    return Owner(f"name:{name}", name)


def is_blackboard_info(filename: str) -> bool:
    """Whether a file is Blackboard's description of an attempt (``..._attempt_<time>.txt``), not a student's file."""
    match = BLACKBOARD.match(filename)
    return bool(match and match["info"])


def blackboard_names(submissions: Submissions, infos: list[Upload]) -> dict[str, str]:
    """Blackboard's attempt files ("Name: Jane Doe (jdoe)"): username key → display name."""
    names = {}
    for upload in infos:
        try:
            text = submissions.read(upload, BLACKBOARD_INFO_LIMIT).decode("utf-8", "replace")
        except Exception:  # damaged or too large: the username stays the name shown
            continue
        user = BLACKBOARD.match(upload.parts[-1])["user"]
        for line in text.splitlines()[:20]:  # "Name: Jane Doe (jdoe)" near the top; plain string work, linear
            name, paren, rest = line.removeprefix("Name:").rpartition("(")
            if (
                line.startswith("Name:")
                and paren
                and rest.strip().rstrip(")").strip() == user
                and name.strip()
            ):
                names[f"blackboard:{nfc(user)}"] = nfc(
                    name
                )  # only the attempt's own user: no one names another
                break
    return names


def place(
    upload: Upload,
    parts: tuple[str, ...],
    students: dict[str, Student],
    unowned: list[tuple[str, str]],
    names: dict[str, str],
) -> None:
    """Put one upload with its student: as a candidate notebook, or as a note saying why not."""
    filename = parts[-1] if parts else upload.shown
    owner = owner_from_folder(parts[0]) if len(parts) > 1 else owner_from_file_name(filename)
    if owner is None:
        lesson = identify_lesson(filename) if filename.lower().endswith(".ipynb") else None
        why = upload.problem or (
            "cannot tell the student from the file name"
            if lesson
            else "not a lesson notebook, and no student in its name"
        )
        unowned.append((upload.shown, why))
        return
    if owner.key in names:
        owner = Owner(owner.key, names[owner.key], owner.late, owner.stamp, owner.original)
    student = students.setdefault(owner.key, Student(owner.key, owner.name))
    if owner.name != student.name and f"also named {owner.name}" not in student.notes:
        student.notes.append(f"also named {owner.name}")
    if upload.problem:
        student.notes.append(f"skipped {upload.shown}: {upload.problem}")
        return
    own_name = owner.original or filename
    lesson = identify_lesson(own_name) if own_name.lower().endswith(".ipynb") else None
    if lesson is None:
        if not is_blackboard_info(filename):
            student.notes.append(f"ignored {upload.shown} (not a lesson notebook)")
        return
    student.files.setdefault(lesson, []).append(Candidate(upload, owner))


def newest(student: Student, lesson: str) -> Candidate:
    """The file to grade for a lesson: the newest, and of members with one name, the last in the archive."""
    return max(
        student.files[lesson],
        key=lambda c: (c.order(), c.upload.member.header_offset if c.upload.member else 0),
    )


def choose(student: Student, lesson: str) -> Candidate:
    """The newest file for a lesson, with a note on the student when there were several."""
    chosen = newest(student, lesson)
    shown = [c.upload.shown for c in student.files[lesson]]
    if len(set(shown)) < len(shown):
        student.notes.append(
            f"the archive holds {len(shown)} members named {chosen.upload.shown} for {lesson}; "
            "graded the last one"
        )
    elif len(shown) > 1:
        student.notes.append(f"{len(shown)} files for {lesson}; graded the newest, {chosen.upload.shown}")
    return chosen
