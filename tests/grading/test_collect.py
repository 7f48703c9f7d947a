"""Intake of submissions (fast, no grading): names and ids, LMS formats, zip members judged one by one, size limits."""

from __future__ import annotations

import os
import stat
import unicodedata
import zipfile
from pathlib import Path

import pytest

from autograder.grading import collect as intake
from autograder.grading import report as records
from autograder.grading.collect import Submissions, TooLarge

NB = "04_contrastive_loss.ipynb"


def make_zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """A zip holding ``members`` (name → bytes) and symbolic links (name → target), names written as given."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, (2026, 11, 20, 10, 0, 0)), data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name, (2026, 11, 20, 10, 0, 0))
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def gathered(tmp_path: Path, members: dict[str, bytes], **links: str) -> intake.ClassIntake:
    """``intake.gather`` over a zip of ``members``."""
    submissions = Submissions(make_zip(tmp_path / "class.zip", members, links))
    try:
        return intake.gather(submissions)
    finally:
        submissions.close()


# ---------------------------------------------------------------- names and ids


@pytest.mark.parametrize(
    "filename, lesson, student",
    [
        ("Copy of 01_pair_dataset (2).ipynb", "01_pair_dataset", ""),
        ("alice_smith_04_contrastive_loss.ipynb", "04_contrastive_loss", "alice_smith"),
        ("pair_dataset.ipynb", "01_pair_dataset", ""),
        ("dora_Copy of 04_contrastive_loss (1).ipynb", "04_contrastive_loss", "dora"),
        ("bob-training_loop(1).ipynb", "05_training_loop", "bob"),
        ("..x_04_contrastive_loss.ipynb", "04_contrastive_loss", "..x"),
        ("notes.ipynb", None, None),
    ],
)
def test_file_names_identify_lesson_and_student(filename, lesson, student):
    """Lesson and student prefix are read from file names with Colab's and browsers' decorations; dots are the
    name's."""
    assert intake.identify_lesson(filename) == lesson
    if lesson is not None:
        assert intake.student_prefix(filename, lesson) == student


@pytest.mark.parametrize(
    "names",
    [
        ("Zoë", "Zoé", "Zoe"),
        ("李雷", "王芳", "student"),
        ("--out", "out", "-out", "..out", "./out", "a/b", "a_b", "a__b"),
        ("Anne-Marie", "Anne Marie", "Anne_Marie", "anne-marie"),
    ],
)
def test_distinct_names_get_distinct_safe_ids(names):
    """No two names share an id; every id is a plain file name that no option or path parser can misread."""
    ids = [intake.derived_id(f"name:{intake.nfc(n)}") for n in names]
    assert len(set(ids)) == len(ids), dict(zip(names, ids))
    for sid in ids:
        assert (
            sid.isascii() and "/" not in sid and not sid.startswith(("-", ".")) and sid not in ("", ".", "..")
        ), sid
        assert len(sid) <= 64, sid


def test_an_id_depends_on_the_name_alone():
    """The same name gives the same id in every run; the two spellings of one name (NFC, NFD) give one id."""
    nfd = unicodedata.normalize("NFD", "Zoë")
    assert nfd != "Zoë"
    assert intake.derived_id(f"name:{intake.nfc(nfd)}") == intake.derived_id("name:Zoë")
    assert intake.derived_id("name:Zoë") == "Zoe__" + records.sha256("name:Zoë".encode())[:10]
    assert intake.derived_id("name:alice") == "alice" and intake.derived_id("canvas:1234") == "canvas-1234"


def test_an_id_taken_by_another_identity_is_never_given_again():
    """Recorded ids stay; a newcomer whose derived id is held by someone else gets the long, unique form."""
    registry = {
        "Zoe__" + records.sha256("name:Zoë".encode())[:10]: "name:someone else"
    }  # a forged hash prefix
    ids = intake.assign_ids(["name:Zoë", "name:alice"], registry)
    assert ids["name:Zoë"].startswith("Zoe__") and len(ids["name:Zoë"]) == len("Zoe__") + 64
    assert registry[ids["name:Zoë"]] == "name:Zoë" and registry[ids["name:alice"]] == "name:alice"
    assert intake.assign_ids(["name:Zoë"], registry) == {
        "name:Zoë": ids["name:Zoë"]
    }  # the next run: the same id


# ---------------------------------------------------------------- LMS formats


@pytest.mark.parametrize(
    "filename, key, name, late, original",
    [
        (
            "hoppergrace_1234_567890_Copy of 04_contrastive_loss (1).ipynb",
            "canvas:1234",
            "hoppergrace",
            False,
            "Copy of 04_contrastive_loss (1).ipynb",
        ),
        (
            "hoppergrace_LATE_1234_567891_04_contrastive_loss-1.ipynb",
            "canvas:1234",
            "hoppergrace",
            True,
            "04_contrastive_loss-1.ipynb",
        ),
        (
            "Grace Hopper_5678_assignsubmission_file_04_contrastive_loss.ipynb",
            "moodle:5678",
            "Grace Hopper",
            False,
            NB,
        ),
        (
            "Lesson 4_gh42_attempt_2026-11-20-10-00-00_04_contrastive_loss.ipynb",
            "blackboard:gh42",
            "gh42",
            False,
            NB,
        ),
        (
            "Lesson_4_gh42_attempt_2026-11-21-09-30-00_LATE_04_contrastive_loss.ipynb",
            "blackboard:gh42",
            "gh42",
            True,
            NB,
        ),
        ("grace_04_contrastive_loss.ipynb", "name:grace", "grace", False, "grace_04_contrastive_loss.ipynb"),
        (
            "alice_2024_01_pair_dataset.ipynb",
            "name:alice_2024",
            "alice_2024",
            False,
            "alice_2024_01_pair_dataset.ipynb",
        ),
    ],
)
def test_lms_file_names_name_their_owner(filename, key, name, late, original):
    """Canvas, Moodle and Blackboard names give the LMS's id, the display name, the late mark and the original name."""
    owner = intake.owner_from_file_name(filename)
    assert (owner.key, owner.name, owner.late, owner.original) == (key, name, late, original)


def test_a_moodle_folder_is_its_student():
    """Moodle's "Full Name_12345_assignsubmission_file_" folder: the participant id, with the full name shown."""
    owner = intake.owner_from_folder("Zoë Ünal_5678_assignsubmission_file_")
    assert (owner.key, owner.name) == ("moodle:5678", "Zoë Ünal")


def test_blackboard_attempt_files_give_the_full_name(tmp_path):
    """The attempt's .txt file ("Name: Alan Turing (at1)") names the student; the newest attempt is graded."""
    stamp1, stamp2 = "2026-11-20-10-00-00", "2026-11-21-09-30-00"
    found = gathered(
        tmp_path,
        {
            f"Lesson 4_at1_attempt_{stamp1}.txt": b"Name: Alan Turing (at1)\nAssignment: Lesson 4\n",
            f"Lesson 4_at1_attempt_{stamp1}_{NB}": b"older",
            f"Lesson 4_at1_attempt_{stamp2}_LATE_{NB}": b"newer",
        },
    )
    student = found.students["blackboard:at1"]
    assert student.name == "Alan Turing" and found.unowned == []
    chosen = intake.choose(student, "04_contrastive_loss")
    assert chosen.owner.late and chosen.upload.parts[-1].endswith(f"{stamp2}_LATE_{NB}")


# ---------------------------------------------------------------- zip members, one by one


def test_unsafe_members_are_skipped_and_noted_on_their_student(tmp_path):
    """Absolute, '..' and link members are never used; each is noted on the student its file name names."""
    found = gathered(
        tmp_path,
        {
            f"/etc/abs_{NB}": b"x",
            f"../../escape_{NB}": b"x",
            f"sub/../subby_{NB}": b"x",
            f"ok_{NB}": b"{}",
        },
        **{f"linker/{NB}": "/etc/passwd"},
    )
    assert set(found.students) == {"name:abs", "name:escape", "name:subby", "name:ok", "name:linker"}
    for key, why in (
        ("name:abs", "an absolute path"),
        ("name:escape", "a path through '..'"),
        ("name:subby", "a path through '..'"),
        ("name:linker", "a link in the archive"),
    ):
        student = found.students[key]
        assert student.files == {} and len(student.notes) == 1 and why in student.notes[0], student.notes
    assert list(found.students["name:ok"].files) == ["04_contrastive_loss"]


def test_duplicated_members_grade_the_last_and_say_so(tmp_path):
    """Two members with one name: the last in the archive is graded, and the student's notes say so."""
    path = tmp_path / "dup.zip"
    with zipfile.ZipFile(path, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr(f"dup/{NB}", b"first")
        archive.writestr(f"dup/{NB}", b"second")
    submissions = Submissions(path)
    student = intake.gather(submissions).students["name:dup"]
    chosen = intake.choose(student, "04_contrastive_loss")
    assert submissions.read(chosen.upload, 100) == b"second"
    assert student.notes == [
        f"the archive holds 2 members named dup/{NB} for 04_contrastive_loss; graded the last one"
    ]


def test_utf8_names_without_the_utf8_flag_are_read_as_utf8(tmp_path):
    """Zips from some tools store UTF-8 names without saying so: 李雷 stays 李雷, not cp437 mojibake."""
    path = tmp_path / "raw.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"李雷_{NB}", b"{}")
    data = bytearray(path.read_bytes())
    for header, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # clear the UTF-8 flag (bit 11) in both
        data[data.index(header) + flags_at + 1] &= ~0x08
    path.write_bytes(bytes(data))
    with zipfile.ZipFile(path) as archive:
        assert not archive.infolist()[0].flag_bits & 0x800
    assert set(gathered_from(path).students) == {"name:李雷"}


def gathered_from(path: Path) -> intake.ClassIntake:
    """``intake.gather`` over an existing zip."""
    submissions = Submissions(path)
    try:
        return intake.gather(submissions)
    finally:
        submissions.close()


def test_a_wrapping_folder_is_not_a_student(tmp_path):
    """submissions/alice/... and submissions/bob_04...: the top folder wraps the class; alice/04... is alice's."""
    found = gathered(tmp_path, {f"submissions/alice/{NB}": b"{}", f"submissions/bob_{NB}": b"{}"})
    assert set(found.students) == {"name:alice", "name:bob"}
    found = gathered(tmp_path, {f"alice/{NB}": b"{}", "alice/01_pair_dataset.ipynb": b"{}"})
    assert set(found.students) == {"name:alice"}


def test_junk_is_ignored_and_strays_are_listed(tmp_path):
    """macOS and Jupyter leftovers are no one's work; a file with no student in its name goes to intake.csv."""
    found = gathered(
        tmp_path,
        {
            f"__MACOSX/._alice_{NB}": b"x",
            f"alice/.ipynb_checkpoints/{NB}": b"x",
            f"alice/{NB}": b"{}",
            "README.txt": b"hello",
            NB: b"{}",
        },
    )
    assert set(found.students) == {"name:alice"} and found.students["name:alice"].notes == []
    assert dict(found.unowned) == {
        "README.txt": "not a lesson notebook, and no student in its name",
        NB: "cannot tell the student from the file name",
    }


# ---------------------------------------------------------------- size limits


def test_a_member_is_never_read_past_its_limit(tmp_path):
    """A 64 MiB member of a small zip: refused by its declared size, and by the bytes that arrive if the header lies."""
    path = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open(f"bomber/{NB}", "w") as member,
    ):
        for _ in range(64):
            member.write(bytes(1024 * 1024))
    assert path.stat().st_size < 1024 * 1024
    submissions = Submissions(path)
    upload = submissions.uploads[0]
    with pytest.raises(TooLarge):
        submissions.read(upload, 20 * 1024 * 1024)
    upload.size = 10  # a header that lies about the size: the bytes that arrive are counted all the same
    with pytest.raises((TooLarge, zipfile.BadZipFile)):
        submissions.read(upload, 20 * 1024 * 1024)
    submissions.close()


def test_an_archive_over_its_limit_is_refused_before_reading(tmp_path):
    """A zip larger than --max-archive-mb, or not a zip at all: one clear error, nothing read."""
    path = make_zip(tmp_path / "class.zip", {f"a_{NB}": bytes(2 * 1024 * 1024)})
    path.write_bytes(path.read_bytes() + bytes(2 * 1024 * 1024))  # padding: the file is over 2 MB
    with pytest.raises(intake.IntakeError, match="over the limit of 1 MB for one archive"):
        Submissions(path, archive_limit_mb=1)
    (tmp_path / "notes.txt").write_text("not a zip")
    with pytest.raises(intake.IntakeError, match="is not a readable zip file"):
        Submissions(tmp_path / "notes.txt")


def test_a_folder_is_read_without_following_links(tmp_path):
    """In a folder of submissions, a link is noted, never followed; a pipe is noted, never read."""
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    (subs / "alice" / NB).symlink_to("/etc/passwd")
    (subs / f"bob_{NB}").write_text("{}")
    (subs / "carol").mkdir()
    os.mkfifo(subs / "carol" / NB)  # reading it would wait forever
    found = intake.gather(Submissions(subs))
    assert found.students["name:alice"].files == {}
    assert found.students["name:alice"].notes == [f"skipped alice/{NB}: a link, not a file"]
    assert found.students["name:carol"].notes == [
        f"skipped carol/{NB}: a special file (device, pipe or socket)"
    ]
    assert list(found.students["name:bob"].files) == ["04_contrastive_loss"]


# ---------------------------------------------------------------- the report


@pytest.mark.parametrize(
    "value, shown",
    [
        ('=HYPERLINK("x")', '\'=HYPERLINK("x")'),
        ("--out", "'--out"),
        ("+1", "'+1"),
        ("@x", "'@x"),
        ("Zoë", "Zoë"),
        ("..x", "..x"),
        ("bad\udcffbyte", "bad\ufffdbyte"),
    ],
)
def test_csv_cells_are_never_formulas(value, shown):
    """A name a spreadsheet would run as a formula is quoted; undecodable bytes become U+FFFD."""
    assert records.cell_text(value) == shown


def test_a_manifest_of_the_first_format_is_converted(tmp_path):
    """Runs of the previous version keep their students, ids, scores and notes."""
    (tmp_path / records.MANIFEST).write_text(
        '{"alice": {"04_contrastive_loss": {"sha256": "ab", "score": 20.0, '
        '"notes": ["n"], "graded_at": "t"}}}'
    )
    manifest = records.load_manifest(tmp_path)
    assert manifest["ids"] == {"alice": "name:alice"}
    assert manifest["students"]["alice"] == {
        "name": "alice",
        "lessons": {
            "04_contrastive_loss": {"file": "sha256:ab", "score": 20.0, "notes": ["n"], "graded_at": "t"}
        },
    }


# ---------------------------------------------------------------- attacks found in review


@pytest.mark.parametrize(
    "filename, key",
    [
        (f"Mallory M_555_assignsubmission_file_x_777_assignsubmission_file_{NB}", "moodle:555"),
        (
            f"HW1_mallory_attempt_2026-11-20-10-00-00_x_alice_attempt_2099-01-01-00-00-00_{NB}",
            "blackboard:mallory",
        ),
        (f"mallory_555555_123456_x_LATE_777777_654321_{NB}", "canvas:555555"),
    ],
)
def test_a_student_cannot_file_work_under_another_id(filename, key):
    """The LMS writes its part first; whatever the student puts in their own file name, the first id is theirs."""
    assert intake.owner_from_file_name(filename).key == key


def test_a_blackboard_attempt_file_names_only_its_own_user(tmp_path):
    """An attempt .txt names its own user only, and a long hostile line is read in linear time."""
    stamp = "2026-11-20-10-00-00"
    found = gathered(
        tmp_path,
        {
            f"HW1_alice_attempt_{stamp}_{NB}": b"{}",
            f"HW1_mallory_attempt_{stamp}.txt": b"Name: Evil Name (alice)\n"
            + b"Name: "
            + b" " * 60_000
            + b"x\n",
            f"HW1_mallory_attempt_{stamp}_{NB}": b"{}",
        },
    )
    assert found.students["blackboard:alice"].name == "alice"
    assert found.students["blackboard:mallory"].name == "mallory"


def test_folders_with_names_in_other_encodings_stay_apart(tmp_path):
    """Two folders named in Latin-1 (Zoë, Zoé: bytes that are not UTF-8) are two students."""
    subs = tmp_path / "subs"
    for raw in (b"Zo\xeb", b"Zo\xe9"):
        folder = Path(os.fsdecode(bytes(subs) + b"/" + raw))
        folder.mkdir(parents=True)
        (folder / NB).write_text("{}")
    found = intake.gather(Submissions(subs))
    assert len(found.students) == 2, list(found.students)
    ids = intake.assign_ids(list(found.students), {})
    assert len(set(ids.values())) == 2 and all(sid.isascii() for sid in ids.values())


def test_ids_differing_only_in_case_or_reserved_by_windows_are_avoided():
    """ "Alice" after "alice" gets a hashed id (one folder on case-insensitive systems); "CON" is never an id."""
    registry: dict[str, str] = {}
    ids = intake.assign_ids(["name:alice", "name:Alice", "name:CON"], registry)
    assert ids["name:Alice"] == "Alice" and ids["name:alice"].startswith("alice__"), (
        ids
    )  # keys in sorted order
    assert ids["name:CON"].startswith("CON__"), ids


def test_a_zip_whose_names_break_its_own_encoding_is_refused_cleanly(tmp_path):
    """A name flagged UTF-8 that is not UTF-8: one IntakeError, not a traceback."""
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"é_{NB}", b"{}")
    data = path.read_bytes().replace("é".encode(), b"\xff\xfe")
    path.write_bytes(data)
    with pytest.raises(intake.IntakeError):
        Submissions(path)


# ---------------------------------------------------------------- shards of a class


@pytest.mark.parametrize("text", ["0/1", "3/8", "7/8"])
def test_a_shard_is_k_of_n(text):
    shard = intake.Shard.parse(text)
    assert f"{shard.index}/{shard.count}" == text


@pytest.mark.parametrize("text", ["8/8", "-1/8", "1/0", "1", "a/b", "1/2/3", ""])
def test_a_malformed_shard_is_refused_saying_what_is_expected(text):
    with pytest.raises(ValueError, match="K/N with 0 <= K < N"):
        intake.Shard.parse(text)


def test_every_student_is_in_exactly_one_shard_about_evenly():
    keys = [f"name:student{k}" for k in range(600)]
    shards = [intake.Shard(k, 4) for k in range(4)]
    owners = {key: [s.index for s in shards if s.holds(key)] for key in keys}
    assert all(len(found) == 1 for found in owners.values())
    sizes = [sum(found == [s.index] for found in owners.values()) for s in shards]
    assert min(sizes) > 0.7 * 150 and max(sizes) < 1.3 * 150, sizes  # about even


def test_shards_agree_across_processes():
    """The hash is the identity's own (sha256), not Python's per-process hash: another machine agrees."""
    import subprocess
    import sys

    keys = [f"name:student{k}" for k in range(50)]
    here = [next(k for k in range(3) if intake.Shard(k, 3).holds(key)) for key in keys]
    code = (
        "from autograder.grading.collect import Shard; keys = [f'name:student{k}' for k in range(50)]; "
        "print([next(k for k in range(3) if Shard(k, 3).holds(key)) for key in keys])"
    )
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert there.stdout.strip() == str(here)
