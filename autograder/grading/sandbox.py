"""The grading sandbox: each notebook's kernel runs under bubblewrap, and each student's processes in cgroups.

A student's notebook is code written by an adversary. Only the *kernel* runs it, so only the kernel
is sandboxed (bubblewrap, ``bwrap``, the sandbox Flatpak relies on), started from a kernelspec
whose command is ``bwrap ... python -m ipykernel_launcher``:

* an unprivileged user inside (uid 65534), every capability dropped, no further user namespaces;
* new PID, IPC, UTS, cgroup and **network** namespaces: no interface but ``lo``, no route; the
  kernel talks to the grader over Unix sockets (ZeroMQ's ``ipc`` transport) in one folder;
* nothing of the host but what the kernel needs, read-only: ``/usr``, the Python installation and
  environment, the course packages (each package folder alone: never the repository's ``.git``),
  the loader cache, the user database, the font configuration and matplotlib's list of those fonts
  (built once a run under these same walls: ``build_font_list``); a private ``/var/tmp``
  (``TMPDIR``), ``/dev/shm`` and working folder, all of them tmpfs that vanish with the kernel;
  ``/`` and ``/tmp`` read-only; the only host folder it can write to is the one holding its
  sockets, on ``/dev/shm`` (memory) where there is one, so that what it writes there counts
  against the student's memory limit;
* ``--die-with-parent`` and a PID namespace: when the kernel ends, every process it started ends.

The worker that drives the kernel (nbgrader, nbclient) runs outside, as the instructor's user: the
kernel cannot see its processes, files or file descriptors. Per student, where the machine offers
cgroups (v1 ``memory`` and ``pids`` controllers, or v2 with both delegated), the worker and
everything it starts share one memory limit and one process limit (``StudentGroup``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from data_utils.env import (
    GRADING_ENV_VAR,
    GRADING_FIGURES_BACKEND,
    MPL_BACKEND_VAR,
    SANDBOX_DIR_VAR,
    SANDBOXED_VAR,
)

from .timing import cpu_counter, group_cpu_seconds

SANDBOX_UID = 65534  # "nobody"
KERNEL_NAME = "siamese-sandbox"
PACKAGES = ("autograder", "solutions", "data_utils")
TMPFS_BYTES = 512 * 1024 * 1024  # each of /tmp, /dev/shm and the working folder
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/passwd",
    "/etc/group",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/fonts",
)
CGROUP_ROOT = Path("/sys/fs/cgroup")
KERNEL_MPLCONFIGDIR = Path(
    "/var/tmp/matplotlib"
)  # matplotlib's settings and font list, in the kernel's tmpfs


def package_folders() -> list[Path]:
    """The course packages' folders, wherever this Python imports them from."""
    folders = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            folders.append(Path(next(iter(spec.submodule_search_locations))).resolve())
    return folders


def other_copies(name: str, used: Path) -> list[Path]:
    """Folders named ``name`` on this Python's path other than ``used`` (e.g. a package installed by an earlier
    ``pip install .``): the kernel could read them, so the grader covers them as it covers the one in use."""
    found = []
    for entry in sys.path:
        folder = Path(entry or ".").absolute() / name
        if folder.is_dir() and folder.resolve() != used.resolve() and folder.resolve() not in found:
            found.append(folder.resolve())
    return found


def readable_paths() -> list[Path]:
    """Host folders the kernel may read: the Python installation and environment, the course packages."""
    # Both the paths as Python names them and where their links lead: the kernel starts from the same names.
    named = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).parent]
    wanted = [*(p.absolute() for p in named), *(p.resolve() for p in named), *package_folders()]
    kept: list[Path] = []
    for path in sorted(set(wanted), key=lambda p: len(p.parts)):
        if not any(path == k or k in path.parents for k in kept) and not str(path).startswith("/usr/"):
            kept.append(path)
    return kept


def _system_binds() -> list[str]:
    """``/usr`` read-only, and ``/bin``, ``/lib``... as the host has them (links into ``/usr`` or folders)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    for name in ETC_FILES:
        args += ["--ro-bind-try", name, name]
    return args


def kernel_environment(work_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The whole environment of a sandboxed kernel: nothing of the grader's (no tokens, no database URLs), and
    ``extra``."""
    env = {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(work_dir),
        "TMPDIR": "/var/tmp",
        "LANG": "C.UTF-8",
        "MPLCONFIGDIR": str(KERNEL_MPLCONFIGDIR),
        MPL_BACKEND_VAR: GRADING_FIGURES_BACKEND,  # figures made, never drawn: no check reads a picture
        GRADING_ENV_VAR: "autograde",
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        SANDBOX_DIR_VAR: str(work_dir),
        SANDBOXED_VAR: "1",  # the checks' preamble: import nothing from a folder the notebook can write
    }
    if os.environ.get("PYTHONPATH"):  # a course imported from a copy (tests, an instructor's checkout)
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return {**env, **(extra or {})}


def bwrap_command(
    work_dir: Path, run_dir: Path, env: dict[str, str] | None = None, overlays: dict[Path, Path] | None = None
) -> list[str]:
    """The bubblewrap command line that runs a program in the sandbox (the program's argv follows it).

    ``env`` adds to the kernel's environment; ``overlays`` maps a folder the kernel would read to the host
    folder bound over it, read-only (``solutions`` → a copy without the lesson's reference, say).
    """
    args = [
        shutil.which("bwrap") or "bwrap",
        "--unshare-all",
        "--unshare-user",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--disable-userns",
        "--clearenv",
    ]
    for name, value in kernel_environment(work_dir, env).items():
        args += ["--setenv", name, value]
    # Order matters: a later mount covers what an earlier one put at or below its place.
    args += ["--proc", "/proc", "--dev", "/dev", *_system_binds()]
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        args += ["--size", str(TMPFS_BYTES), "--tmpfs", folder]
    for path in readable_paths():
        args += ["--ro-bind", str(path), str(path)]
    for target, source in (overlays or {}).items():
        args += ["--ro-bind", str(source), str(target)]
    args += [
        "--bind",
        str(run_dir),
        str(run_dir),
        "--size",
        str(TMPFS_BYTES),
        "--tmpfs",
        str(work_dir),
        "--chdir",
        str(work_dir),
    ]
    # The folders made to hold the mounts (under / and /tmp, where grading folders often are) stay read-only:
    # a notebook cannot plant a package next to the course's. The mounts themselves keep their own flags.
    return args + ["--remount-ro", "/tmp", "--remount-ro", "/"]


def build_font_list(folder: Path) -> Path | None:
    """matplotlib's list of the fonts a kernel sees, built once under the kernels' own walls into ``folder``.

    Each kernel starts with an empty ``/var/tmp``, where matplotlib would spend about 0.3 s of CPU building this
    list at its first import; bound read-only into every kernel (``font_list_overlay``), it is built once a run,
    by a sandboxed process that runs no student's code. ``None`` if it could not be built: each kernel then
    builds its own, as before.
    """
    run_dir = folder / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    command = bwrap_command(folder / "home", run_dir, {"MPLCONFIGDIR": str(run_dir)})
    try:
        built = (
            subprocess.run(
                [*command, sys.executable, "-c", "import matplotlib.font_manager"],
                capture_output=True,
                timeout=60,
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        built = False
    found = sorted(run_dir.glob("fontlist-*.json"))
    if built and len(found) == 1:
        return found[0]
    for partial in found:  # never bound into a kernel: matplotlib would complain in every notebook
        partial.unlink()
    return None


def font_list_overlay(font_list: Path | None) -> dict[Path, Path]:
    """The overlay that puts the run's font list where a kernel's matplotlib reads it (none without one)."""
    return {KERNEL_MPLCONFIGDIR / font_list.name: font_list} if font_list else {}


def write_kernelspec(
    folder: Path,
    work_dir: Path,
    run_dir: Path,
    env: dict[str, str] | None = None,
    overlays: dict[Path, Path] | None = None,
) -> Path:
    """A kernelspec named ``siamese-sandbox`` in ``folder/kernels`` (put ``folder`` on ``JUPYTER_PATH``)."""
    spec = folder / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True, exist_ok=True)
    argv = [
        *bwrap_command(work_dir, run_dir, env, overlays),
        sys.executable,
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
    ]
    # Interrupts go as a message on the control channel: a signal would reach bubblewrap, not the kernel.
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": argv,
                "display_name": "Python 3 (grading sandbox)",
                "language": "python",
                "interrupt_mode": "message",
            },
            indent=1,
        )
    )
    return spec


PROBE = """
import os, socket
assert os.getuid() == 65534, os.getuid()
assert [name for _, name in socket.if_nameindex()] == ["lo"], socket.if_nameindex()
assert open("/proc/self/status").read().split("CapEff:")[1].split()[0] == "0000000000000000"
print("sandboxed")
"""


@lru_cache(maxsize=1)
def availability() -> tuple[bool, str]:
    """(True, "") if kernels can be sandboxed on this machine, else (False, why not and what to do)."""
    if not sys.platform.startswith("linux"):
        return False, f"bubblewrap needs Linux and this is {sys.platform}"
    if shutil.which("bwrap") is None:
        return False, "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="siamese-sandbox-probe-") as folder:
        command = [
            *bwrap_command(Path(folder) / "work", Path(folder) / "run"),
            sys.executable,
            "-I",
            "-c",
            PROBE,
        ]
        (Path(folder) / "run").mkdir()
        try:
            probe = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            return False, f"bubblewrap could not be run ({error})"
    if probe.returncode != 0 or "sandboxed" not in probe.stdout:
        lines = (probe.stderr or probe.stdout).strip().splitlines()
        return False, (
            f"bubblewrap cannot build the sandbox here ({lines[-1] if lines else probe.returncode}); "
            "it needs unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
            "or Docker with a seccomp profile that allows them)"
        )
    return True, ""


# ---------------------------------------------------------------- limits per student (cgroups)


def cgroup_controllers() -> dict[str, Path] | None:
    """Where this process may create memory and pids groups: {"memory": ..., "pids": ...}, ``None`` if nowhere."""
    v1 = {"memory": CGROUP_ROOT / "memory", "pids": CGROUP_ROOT / "pids"}
    if all((path / "cgroup.procs").is_file() and os.access(path, os.W_OK) for path in v1.values()):
        return v1
    unified = CGROUP_ROOT / "cgroup.subtree_control"
    if unified.is_file() and os.access(CGROUP_ROOT, os.W_OK):
        enabled = unified.read_text().split()
        if "memory" in enabled and "pids" in enabled:
            return {"memory": CGROUP_ROOT, "pids": CGROUP_ROOT}
    return None


def cpu_accounting_group() -> Path | None:
    """This process's own cgroup-v1 CPU-accounting group, if writable; ``None`` elsewhere.

    A student's accounting group is made inside it, so that a measurement around the whole grader
    (``autograder.benchmark``) counts the students' kernels too.
    """
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, own = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            for mount in ("cpuacct", "cpu,cpuacct"):
                folder = CGROUP_ROOT / mount / own.lstrip("/")
                if (folder / "cpuacct.usage").is_file() and os.access(folder, os.W_OK):
                    return folder
    return None


class StudentGroup:
    """One student's cgroups: every process of their grading shares one memory limit and one process limit."""

    def __init__(self, name: str, memory_mb: int, max_processes: int):
        controllers = cgroup_controllers()
        self.folders: list[Path] = []
        if controllers is None:
            return
        unified = controllers["memory"] == controllers["pids"]
        for kind, root in controllers.items():
            folder = root / f"siamese-grading-{os.getpid()}-{name}"
            if folder in self.folders:
                continue
            folder.mkdir(exist_ok=True)
            self.folders.append(folder)
            if kind == "memory" and memory_mb > 0:
                limit = str(memory_mb * 1024 * 1024)
                (folder / ("memory.max" if unified else "memory.limit_in_bytes")).write_text(limit)
            if kind == "pids" or unified:
                (folder / "pids.max").write_text(str(max_processes))
        accounting = cpu_accounting_group()
        if not unified and accounting is not None:  # v2 groups count CPU themselves (cpu.stat)
            folder = accounting / f"siamese-grading-{os.getpid()}-{name}"
            folder.mkdir(exist_ok=True)
            self.folders.append(folder)

    def cpu_seconds(self) -> float | None:
        """CPU seconds used so far by every process of this student's grading; ``None`` where nothing counts it."""
        counter = cpu_counter(self.folders)
        return group_cpu_seconds(counter) if counter else None

    @property
    def enforced(self) -> bool:
        """Whether the limits are in force (cgroups were available)."""
        return bool(self.folders)

    def join_command(self) -> list[str]:
        """Arguments that make the worker join these groups first thing (``--cgroup PATH`` each)."""
        return [arg for folder in self.folders for arg in ("--cgroup", str(folder))]

    def stop_all(self) -> int:
        """Kill every process still in the groups (what a notebook left running); return how many."""
        return stop_processes(self.folders)

    def remove(self) -> None:
        """Stop what is left and delete the groups."""
        remove_groups(self.folders)


def stop_processes(folders: list[Path]) -> int:
    """Kill every process in the cgroups ``folders``, until none is left; return how many."""
    killed: set[int] = set()
    for _ in range(50):
        pids = {int(p) for folder in folders for p in (folder / "cgroup.procs").read_text().split()}
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    return len(killed)


def remove_groups(folders: list[Path]) -> None:
    """Stop what is left in the cgroups ``folders`` and delete them (those already gone are left alone)."""
    folders = [folder for folder in folders if folder.is_dir()]
    if not folders:
        return
    stop_processes(folders)
    for folder in folders:
        for _ in range(100):
            try:
                folder.rmdir()
                break
            except OSError:  # the last processes are still exiting
                time.sleep(0.05)


def remove_stale_groups() -> list[Path]:
    """Remove the students' cgroups a grader left when it was killed (its pid, in their names, is gone); return them.

    A process still in one (a kernel of the killed run) is stopped first.
    """
    roots = {*(cgroup_controllers() or {}).values(), *filter(None, [cpu_accounting_group()])}
    removed = []
    for folder in sorted(f for root in roots for f in root.glob("siamese-grading-*-*") if f.is_dir()):
        pid = folder.name.split("-")[2]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        remove_groups([folder])
        if not folder.exists():
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def join_groups(folders: list[Path]) -> None:
    """Move this process (and so everything it starts) into the given cgroups."""
    for folder in folders:
        (folder / "cgroup.procs").write_text(str(os.getpid()))
