"""Operating-system walls around a student's notebooks while they are graded (Linux).

A notebook runs as the instructor's own user, so on its own it could rewrite the checks, the
gradebook or another student's sandbox, or leave a process behind that does so after the grading.
Where Linux lets an unprivileged user create namespaces (``unshare``, from util-linux), each
grading worker runs in its own:

* **mount namespace**: every file system is read-only except the student's own sandbox; the
  grader's output folder, the submissions and the other sandboxes are hidden behind empty folders;
* **PID namespace**: the notebook sees only its own processes (not the grader's command line),
  and when the worker ends, the kernel ends every process left in it, however it was started.

Where namespaces are not available (macOS, some containers), grading still works and says so; the
grader's own checks (restoring its files, checking test cells, counting ``[PASS]`` lines) remain.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

UNSHARE_OPTIONS = ["--user", "--map-root-user", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child"]
KERNEL_ONLY = ("/proc", "/sys", "/dev")  # the kernel's own file systems: left as the namespace made them

# mount(2) flags from <sys/mount.h>
MS_RDONLY, MS_REMOUNT, MS_BIND = 1, 32, 4096
# Flags a user namespace may not clear on a mount it inherited: a remount must repeat them.
KEPT_FLAGS = {"nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21,
              "strictatime": 1 << 24}


def command_prefix() -> list[str]:
    """The command that starts a program inside new user, mount and PID namespaces."""
    return [shutil.which("unshare") or "unshare", *UNSHARE_OPTIONS]


@lru_cache(maxsize=1)
def availability() -> tuple[bool, str]:
    """(True, "") if grading workers can be walled in on this machine, else (False, why not)."""
    if not sys.platform.startswith("linux"):
        return False, f"namespaces are a Linux feature and this is {sys.platform}"
    if shutil.which("unshare") is None:
        return False, "the `unshare` command (util-linux) is not installed"
    with tempfile.TemporaryDirectory(prefix="siamese-isolation-probe-") as folder:
        try:
            # This file run as a script: it needs only the standard library, so the probe takes a moment.
            probe = subprocess.run([*command_prefix(), sys.executable, "-I", __file__, folder],
                                   capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            return False, f"unshare could not be run ({error})"
    if probe.returncode != 0:
        lines = (probe.stderr or probe.stdout).strip().splitlines()
        return False, f"unshare failed: {lines[-1] if lines else f'exit status {probe.returncode}'}"
    return True, ""


def _mount(source: str | None, target: Path, fstype: str | None, flags: int, options: str | None = None) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    encode = lambda text: text.encode() if text is not None else None  # noqa: E731
    if libc.mount(encode(source), encode(str(target)), encode(fstype), flags, encode(options)) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount {target}: {os.strerror(error)}")


def _mount_points() -> list[tuple[Path, bool, int]]:
    """Every mount point of this namespace: (path, whether it is read-only already, its flags to keep)."""
    points = []
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")  # spaces come as \040
            options = fields[5].split(",")
            points.append((Path(point), "ro" in options, sum(KEPT_FLAGS.get(option, 0) for option in options)))
    return points


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def lock_down(sandbox: Path, hide: list[Path]) -> None:
    """Make every file system read-only but ``sandbox``, and hide the folders in ``hide``; call inside the namespaces."""
    sandbox = sandbox.resolve()
    handle = os.open(sandbox, os.O_PATH | os.O_DIRECTORY)  # the sandbox, still reachable once a folder above is hidden
    covered: list[Path] = []
    for folder in sorted({f.resolve() for f in hide if f.is_dir()}):  # a folder before those inside it
        if not any(_inside(folder, done) for done in covered):
            _mount("tmpfs", folder, "tmpfs", 0, "mode=755,size=64k")  # an empty folder over the real one
            covered.append(folder)
    sandbox.mkdir(parents=True, exist_ok=True)  # inside an empty folder, if one now covers the sandbox
    _mount(f"/proc/self/fd/{handle}", sandbox, None, MS_BIND)
    os.close(handle)
    for point, read_only, kept in _mount_points():
        if read_only or point == sandbox or any(_inside(point, Path(k)) for k in KERNEL_ONLY):
            continue
        _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept)
    for point, read_only, _ in _mount_points():  # fail closed: never grade in a sandbox that leaks
        if not read_only and point != sandbox and not any(_inside(point, Path(k)) for k in KERNEL_ONLY):
            raise OSError(f"{point} is still writable")


def stop_other_processes(wait_s: float = 5.0) -> int:
    """Kill every other process of this PID namespace (what a notebook left running); return how many."""
    own = os.getpid()
    killed: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != own:
            try:
                if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # already ended, waiting to be reaped
                os.kill(int(entry.name), signal.SIGKILL)
                killed.add(int(entry.name))
            except (OSError, IndexError):  # gone meanwhile
                pass
    # Reap them: this process is the namespace's init, so they all end up as its children.
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.01)
    return len(killed)


def _probe(folder: Path) -> int:
    """Lock down with ``folder`` as the sandbox and check that only it can be written to."""
    lock_down(folder, [])
    (folder / "written").write_text("the sandbox is writable")
    outside = Path(__file__).resolve().parent / ".isolation-probe"  # the grader's own package folder
    try:
        outside.write_text("must not be possible")
    except OSError:
        return 0
    outside.unlink()
    print(f"{outside.parent} is writable inside the namespace", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(_probe(Path(sys.argv[1])))
