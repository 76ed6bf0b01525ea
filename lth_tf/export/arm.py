"""Running .tflite files on an emulated ARM LiteRT: the real ``ai-edge-litert`` aarch64 wheel
in an arm64 Python 3.11 under ``qemu-aarch64-static``, built once from Debian's arm64 packages
and PyPI's aarch64 wheels into a cache (:data:`ARM_CACHE_ENV`).

Why emulated: XNNPack's sparse inference (the "Fast Sparse ConvNets" path for the 1x1
convolutions of float MobileNet-shaped networks) is switched off on every x86 CPU with AVX, so on
this machine a sparse float ticket runs at the dense speed. On ARM (phones, most edge boards) it
is on. Here one sees what ARM does with a file: which XNNPACK micro-kernels run
(:func:`kernels_that_ran`; ``spmm`` ones mean sparse inference), its outputs, and timings
(:func:`run_on_arm`). Emulated times are not device times: only the ratio of files timed
interleaved in one run means something, and only when it repeats across rounds.

>>> runtime = arm_runtime()  # doctest: +SKIP
>>> sparse_inference_ran(kernels_that_ran(runtime, content, example))  # doctest: +SKIP
True
>>> result = run_on_arm(runtime, {"ticket": content}, {"ticket": batch})  # doctest: +SKIP
>>> result["ticket"]["median_us"]  # doctest: +SKIP
541.4
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import errno
import fcntl
import functools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from lth_tf.errors import LthError, os_error_line
from lth_tf.export import litert

__all__ = [
    "ARM_CACHE_ENV",
    "LITERT_VERSION",
    "ArmRuntime",
    "arm_runtime",
    "default_cache_dir",
    "kernels_that_ran",
    "run_on_arm",
    "sparse_inference_ran",
]

log = logging.getLogger("lth_tf")

ARM_CACHE_ENV = "LTH_TF_ARM_CACHE"
# The LiteRT this project runs on x86 (pyproject.toml), so both sides run the same kernels.
LITERT_VERSION = "2.3.0"
# ai-edge-litert 2.3.0 is built against NumPy 2's C API (it asks numpy>=1.23.2); 2.2.6 has a
# cp311 manylinux aarch64 wheel. Pinned so that a cache never changes under its user.
NUMPY_VERSION = "2.2.6"
# Pure Python; only the set-up's smoke test uses it, to write its one-op model.
FLATBUFFERS_VERSION = "25.12.19"
WHEELS = {
    "ai-edge-litert": LITERT_VERSION,
    "numpy": NUMPY_VERSION,
    "flatbuffers": FLATBUFFERS_VERSION,
}
# Debian 12 (bookworm) arm64 runtime packages that python3.11 + numpy + ai_edge_litert load;
# unpacked, not installed, so no dependency solver runs.
DEBIAN_PACKAGES = (
    "libc6", "libgcc-s1", "libstdc++6",
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    "zlib1g", "libexpat1", "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libsqlite3-0",
    "libuuid1", "libncursesw6", "libtinfo6", "libreadline8", "libdb5.3", "libcrypt1", "libnsl2",
    "libtirpc3",
)  # fmt: skip
# Debian's python3.11 has this directory on sys.path; the wheels are unzipped into it.
SITE_PACKAGES = "usr/lib/python3/dist-packages"
# The wheel's library with XNNPACK's micro-kernels; it is not stripped, so nm names them.
KERNEL_LIBRARY = "libpywrap_litert_common.so"
GUEST_SCRIPT = Path(__file__).with_name("arm_guest.py")
# Written last into a finished root: a root without it (or from other pins) is rebuilt.
STAMP = "lth_tf_arm.json"
SETUP_TIMEOUT_S = 600
# A run's time limit: start-up plus this much per invoke (emulated MobileNets take ~1 s each).
RUN_TIMEOUT_S = 600
INVOKE_TIMEOUT_S = 30
# The fake CPU: two Cortex-A76 cores (MIDR 0x414fd0b1), matching ArmRuntime.cpu's default.
FAKE_CPU_COUNT = 2
FAKE_CPU_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
    "asimddp ssbs"
)


@dataclasses.dataclass(frozen=True)
class ArmRuntime:
    """An arm64 root with python3.11, numpy and ai_edge_litert, and the emulator that runs it.

    >>> ArmRuntime(Path("/cache/root"), "/usr/bin/qemu-aarch64-static").cpu
    'cortex-a76'
    """

    root: Path
    qemu: str
    # qemu's CPU model; the root's fake /proc/cpuinfo describes a Cortex-A76 whatever this is.
    cpu: str = "cortex-a76"


def default_cache_dir() -> Path:
    """``$LTH_TF_ARM_CACHE``, else ``$XDG_CACHE_HOME/lth_tf/arm64-litert`` (``~/.cache``).

    >>> default_cache_dir()  # doctest: +SKIP
    PosixPath('/root/.cache/lth_tf/arm64-litert')
    """
    if os.environ.get(ARM_CACHE_ENV):
        return Path(os.environ[ARM_CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lth_tf" / "arm64-litert"


def arm_runtime(cache_dir: Path | str | None = None) -> ArmRuntime:
    """The emulated ARM LiteRT under ``cache_dir`` (:func:`default_cache_dir`), set up on first
    use (15-30 s: needs qemu-user-static, binutils' nm, and as root apt for the arm64 packages;
    network to the Debian mirrors and PyPI once).

    Processes that race wait on a lock file; the root is built in a temporary directory and
    renamed into place, so an interrupted set-up leaves nothing half-built. Anything missing is
    one :class:`LthError` line saying what to do.

    >>> arm_runtime()  # doctest: +SKIP
    ArmRuntime(root=PosixPath('/root/.cache/lth_tf/arm64-litert/root'), ...)
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        if cache.exists() and not cache.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(cache))
        cache.mkdir(parents=True, exist_ok=True)
        qemu = _host_tool("qemu-aarch64-static", "qemu-user-static")
        _host_tool("nm", "binutils")  # kernels_that_ran reads the kernels' symbols with it
        runtime = ArmRuntime(root=cache.resolve() / "root", qemu=qemu)
        if not _is_finished(runtime.root) or _damage(runtime.root):
            with _locked(cache / ".lock"):
                damage = _damage(runtime.root) if _is_finished(runtime.root) else None
                if damage:
                    log.warning(
                        "The emulated ARM LiteRT under %s is damaged (%s): setting it up again.",
                        cache,
                        damage,
                    )
                if not _is_finished(runtime.root) or damage:  # another process may have built it
                    _build(cache, runtime)
    except OSError as error:
        raise LthError(
            f"the emulated ARM LiteRT's cache: {os_error_line(error)}; "
            f"or set {ARM_CACHE_ENV} to a writable directory"
        ) from None
    return runtime


def kernels_that_ran(
    runtime: ArmRuntime, content: bytes, example: np.ndarray, resolver: str = "AUTO"
) -> list[str]:
    """Sorted names of the XNNPACK micro-kernels that ran when ``content`` is invoked once on
    ``example`` (batch 1, already in the input's dtype) under LiteRT's default options (XNNPACK
    delegate, one thread; ``resolver`` names another ``OpResolverType``).

    qemu logs each block of guest code it translates (``-d in_asm``); the blocks inside the
    kernel library, less its load address (the guest reads /proc/self/maps), fall in the
    symbols ``nm`` lists. Weight-packing kernels (``packw``) run at preparation, not inference.

    >>> kernels = kernels_that_ran(runtime, content, example[:1])  # doctest: +SKIP
    >>> [name for name in kernels if "spmm" in name]  # doctest: +SKIP
    ['xnn_f32_spmm_minmax_ukernel_32x1__aarch64_neonfma_pipelined']
    """
    example = np.asarray(example)
    source, _ = _io_details(content, "the model")
    _check_input(example, source, "the example")
    if len(example) != 1:
        raise LthError(f"the example has a batch of {len(example)}: give one, e.g. example[:1]")
    _check_resolver(resolver)
    with tempfile.TemporaryDirectory(prefix="lth_tf_arm_") as work:
        model, example_file, log_file = (Path(work) / n for n in ("m.tflite", "x.npy", "in.log"))
        model.write_bytes(content)
        np.save(example_file, example)
        done = _run_guest(
            runtime,
            ["kernels", str(model), resolver, str(example_file)],
            qemu_options=["-d", "in_asm", "-D", str(log_file)],
            timeout=RUN_TIMEOUT_S,
            what="the model",
            todo="check that the file runs on x86 (lth_tf.export.litert.predict)",
        )
        library = runtime.root / SITE_PACKAGES / "ai_edge_litert" / KERNEL_LIBRARY
        ran = _symbols_that_ran(log_file, _mapped_range(done.stdout), _kernel_symbols(str(library)))
    # "xnn_": XNNPACK's micro-kernels, not its helpers that pick them (setup_gemm_ukernels).
    return sorted(n for n in ran if n.startswith("xnn_") and "ukernel" in n and "packw" not in n)


def sparse_inference_ran(kernels: Sequence[str]) -> bool:
    """Whether XNNPACK's sparse inference ran: a sparse matrix-times-dense (``spmm``) kernel.

    >>> sparse_inference_ran(["xnn_f32_spmm_minmax_ukernel_32x1__aarch64_neonfma"])
    True
    """
    return any("spmm" in name for name in kernels)


def run_on_arm(
    runtime: ArmRuntime,
    files: dict[str, bytes],
    inputs: dict[str, np.ndarray],
    timing_rounds: int = 5,
    timing_invocations: int = 3,
    timing_warmup: int = 2,
    resolvers: dict[str, str] | None = None,
) -> dict[str, dict]:
    """Each file's outputs on ARM for its batch, and interleaved emulated timings, in one
    emulator process (its start-up costs seconds).

    ``inputs[name]`` is a batch in the file's input dtype (:func:`litert.to_input` prepares
    raw pixels). ``result[name]["outputs"]`` is the first output as float32 (dequantized with
    the file's output details). Then at batch 1, cycling through the batch: ``timing_warmup``
    invokes per file, and ``timing_rounds`` rounds in which each file in turn runs
    ``timing_invocations`` timed invokes: ``round_medians_us`` (one median per round) and
    ``median_us`` (of all of them; ``None`` with ``timing_rounds=0``, which skips timing).
    Each file runs with :func:`litert.op_resolver_for`'s resolver, as on x86, unless
    ``resolvers`` names one ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES").

    >>> files, inputs = {"dense": a, "sparse": b}, {"dense": x, "sparse": x}  # doctest: +SKIP
    >>> result = run_on_arm(runtime, files, inputs)  # doctest: +SKIP
    >>> result["dense"]["median_us"] / result["sparse"]["median_us"]  # doctest: +SKIP
    3.1
    """
    resolvers = resolvers or {}
    if set(resolvers) - set(files):
        raise LthError(f"resolvers for no file: {sorted(set(resolvers) - set(files))}")
    if set(files) - set(inputs):
        missing = sorted(set(files) - set(inputs))
        raise LthError(f"no input for {missing}: give inputs[name] for each file")
    counts = {"timing_rounds": timing_rounds, "timing_invocations": timing_invocations,
              "timing_warmup": timing_warmup}  # fmt: skip
    for what, count in counts.items():
        if count < 0:
            raise LthError(f"{what}={count}: give 0 or more")
    if timing_rounds and not timing_invocations:
        raise LthError("timing_invocations=0 with timing_rounds > 0: give 1 or more")
    with tempfile.TemporaryDirectory(prefix="lth_tf_arm_") as work:
        entries, targets = [], {}
        for i, (name, content) in enumerate(files.items()):
            source, targets[name] = _io_details(content, repr(name))
            batch = np.asarray(inputs[name])
            _check_input(batch, source, f"inputs[{name!r}]")
            resolver = resolvers.get(name) or litert.op_resolver_for(content).name
            _check_resolver(resolver)
            entry = {"name": name, "resolver": resolver}
            for key, suffix in [("model", "tflite"), ("input", "npy"), ("output", "npy")]:
                entry[key] = str(Path(work) / f"{key}_{i}.{suffix}")
            Path(entry["model"]).write_bytes(content)
            np.save(entry["input"], batch)
            entries.append(entry)
        job = {
            "files": entries,
            "rounds": timing_rounds,
            "invocations": timing_invocations,
            "warmup": timing_warmup,
        }
        (Path(work) / "job.json").write_text(json.dumps(job))
        invokes = len(files) * (1 + timing_warmup + timing_rounds * timing_invocations)
        _run_guest(
            runtime,
            ["run", work],
            timeout=RUN_TIMEOUT_S + INVOKE_TIMEOUT_S * invokes,
            what="the files",
            todo="check that the file runs on x86 (lth_tf.export.litert.predict)",
            slow_todo="give fewer files, examples or timing rounds",
        )
        timings = json.loads((Path(work) / "results.json").read_text())
        results = {}
        for entry in entries:
            name, timing = entry["name"], timings[entry["name"]]
            times = timing["times_us"]
            results[name] = {
                "outputs": litert.from_output(np.load(entry["output"]), targets[name]),
                "round_medians_us": timing["round_medians_us"],
                "median_us": float(np.median(times)) if times else None,
            }
    return results


# -- setting up ----------------------------------------------------------------------------------


def _build(cache: Path, runtime: ArmRuntime) -> None:
    """Downloads what is missing, unpacks it into a fresh root, smoke-tests it, moves it in."""
    log.info("Setting up an emulated ARM LiteRT under %s (once, ~30 s)", cache)
    for stale in [*cache.glob(".root-building-*"), *cache.glob(".root-old-*")]:
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed set-up; we hold the lock
    debs = _download_debs(cache / "debs")
    wheels = _download_wheels(cache / "wheels")
    staging = Path(tempfile.mkdtemp(prefix=".root-building-", dir=cache))
    try:
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(staging)], f"delete {deb} and rerun")
        site = staging / SITE_PACKAGES
        site.mkdir(parents=True, exist_ok=True)
        for wheel in wheels:
            _unzip_wheel(wheel, site)
        _write_fake_arm_cpu(staging)
        _run_guest(
            dataclasses.replace(runtime, root=staging),
            ["smoke"],
            timeout=SETUP_TIMEOUT_S,
            what="the set-up's smoke test",
            todo=f"delete {cache} and rerun",
        )
        # Every file's size, so that a file damaged later is noticed before a run blames the model.
        (staging / STAMP).write_text(json.dumps(_pins() | {"files": _file_sizes(staging)}))
        if runtime.root.exists():  # an old root from other pins
            shutil.rmtree(runtime.root.rename(tempfile.mkdtemp(prefix=".root-old-", dir=cache)))
        staging.rename(runtime.root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _pins() -> dict:
    return {"wheels": WHEELS, "debian_packages": list(DEBIAN_PACKAGES)}


def _is_finished(root: Path) -> bool:
    try:
        stamp = json.loads((root / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and {k: v for k, v in stamp.items() if k != "files"} == _pins()


def _file_sizes(root: Path) -> dict[str, int]:
    """Every regular file under ``root`` (the stamp aside) and its size."""
    sizes = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink() and name != STAMP:
                sizes[path.relative_to(root).as_posix()] = path.stat().st_size
    return sizes


def _damage(root: Path) -> str | None:
    """What differs from the finished root's record of its files (None: nothing, or no record)."""
    try:
        recorded = json.loads((root / STAMP).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(recorded, dict):
        return None  # set up before the record existed
    now = _file_sizes(root)
    for name, size in recorded.items():
        if name not in now:
            return f"{name} is missing"
        if now[name] != size:
            return f"{name} is {now[name]:,} bytes, {size:,} when set up"
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``path`` (created if missing) while the block runs."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_root() -> bool:
    return os.geteuid() == 0


def _host_tool(name: str, package: str) -> str:
    """The path of a host program, installed with apt when missing and this process is root."""
    found = shutil.which(name)
    if not found and _is_root() and shutil.which("apt-get"):
        _apt(["install", "-y", "-q", package], f"install {package} yourself, then rerun")
        found = shutil.which(name)
    if not found:
        raise LthError(
            f"{name} not found (the emulated ARM LiteRT needs it): as root run "
            f"`apt-get install {package}`, then rerun"
        )
    return found


def _apt(arguments: list[str], todo: str, cwd: Path | None = None) -> None:
    """``apt-get ARGUMENTS``, once more after ``apt-get update`` (as root) if it fails: package
    lists go stale, and a fresh ``dpkg --add-architecture`` has none."""
    command = ["apt-get", *arguments]
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        _run(command, todo, cwd=cwd, env=environment)
    except LthError:
        if not _is_root():
            raise
        _run(["apt-get", "update", "-q"], "check that the Debian mirrors are reachable")
        _run(command, todo, cwd=cwd, env=environment)


def _download_debs(directory: Path) -> list[Path]:
    """The arm64 .debs of :data:`DEBIAN_PACKAGES` in ``directory``, downloaded if missing."""
    directory.mkdir(exist_ok=True)
    missing = [p for p in DEBIAN_PACKAGES if not _debs_of(directory, p)]
    if missing:
        _add_arm64_architecture()
        with tempfile.TemporaryDirectory(prefix=".downloading-", dir=directory) as partial:
            _apt(
                ["download", *(f"{p}:arm64" for p in missing)],
                "check that apt reaches the Debian mirrors, then rerun",
                cwd=Path(partial),
            )
            for deb in Path(partial).glob("*.deb"):  # whole files only, so reruns can trust them
                deb.rename(directory / deb.name)
    debs = []
    for package in DEBIAN_PACKAGES:
        found = _debs_of(directory, package)
        if not found:
            raise LthError(f"apt-get download gave no {package}:arm64: delete {directory}, rerun")
        debs.append(max(found, key=lambda p: p.stat().st_mtime))  # the newest after an update
    return debs


def _debs_of(directory: Path, package: str) -> list[Path]:
    return [*directory.glob(f"{package}_*_arm64.deb"), *directory.glob(f"{package}_*_all.deb")]


def _add_arm64_architecture() -> None:
    """Makes apt see arm64 packages (``dpkg --add-architecture arm64``; needs root)."""
    todo = "the emulated ARM LiteRT is built from Debian arm64 packages: use a Debian host"
    foreign = _run(["dpkg", "--print-foreign-architectures"], todo).stdout.split()
    if "arm64" in foreign:
        return
    if not _is_root():
        raise LthError(
            "apt has no arm64 packages: as root run `dpkg --add-architecture arm64 && "
            "apt-get update`, then rerun"
        )
    _run(["dpkg", "--add-architecture", "arm64"], "run it yourself as root, then rerun")
    _run(["apt-get", "update", "-q"], "check that the Debian mirrors are reachable")


def _download_wheels(directory: Path) -> list[Path]:
    """The aarch64 cp311 wheels of :data:`WHEELS` in ``directory``, downloaded with this
    Python's pip if missing (pip only downloads; nothing is installed on the host)."""
    directory.mkdir(exist_ok=True)
    wheels = []
    for name, version in WHEELS.items():
        pattern = f"{name.replace('-', '_')}-{version}-*.whl"
        if not list(directory.glob(pattern)):
            with tempfile.TemporaryDirectory(prefix=".downloading-", dir=directory) as partial:
                platforms = ["manylinux_2_28_aarch64", "manylinux_2_27_aarch64",
                             "manylinux_2_17_aarch64", "manylinux2014_aarch64"]  # fmt: skip
                _run(
                    [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                     "--no-cache-dir", "--disable-pip-version-check",
                     *(f"--platform={p}" for p in platforms), "--python-version=3.11",
                     "--implementation=cp", "--abi=cp311", f"--dest={partial}",
                     f"{name}=={version}"],
                    "check that PyPI is reachable (pip's index settings apply) and that "
                    f"`{sys.executable} -m pip` works, then rerun",
                )  # fmt: skip
                for wheel in Path(partial).glob("*.whl"):
                    wheel.rename(directory / wheel.name)
        found = list(directory.glob(pattern))
        if not found:
            raise LthError(f"pip download gave no {name} {version} wheel: rerun")
        wheels.append(found[0])
    return wheels


def _unzip_wheel(wheel: Path, site: Path) -> None:
    """Unzips ``wheel`` into ``site`` keeping the files' modes (its shared libraries)."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            path = archive.extract(member, site)
            mode = (member.external_attr >> 16) & 0o777
            if mode:
                os.chmod(path, mode)


def _write_fake_arm_cpu(root: Path) -> None:
    """An ARM /proc/cpuinfo and /sys CPU tree inside ``root``.

    qemu-user does not emulate /proc/cpuinfo for aarch64, so LiteRT's CPU detection
    (pytorch/cpuinfo) would read the host's x86 files and the Interpreter segfaults. qemu's
    ``-L`` prefix is tried first for every absolute path the guest opens, so these shadow them.
    """
    every = f"0-{FAKE_CPU_COUNT - 1}"
    (root / "proc").mkdir(exist_ok=True)
    (root / "proc" / "cpuinfo").write_text(
        "".join(
            f"processor\t: {c}\nBogoMIPS\t: 50.00\nFeatures\t: {FAKE_CPU_FEATURES}\n"
            "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\n"
            "CPU part\t: 0xd0b\nCPU revision\t: 1\n\n"
            for c in range(FAKE_CPU_COUNT)
        )
    )
    cpus = root / "sys" / "devices" / "system" / "cpu"
    files = {"possible": every, "present": every, "online": every, "kernel_max": "255"}
    for c in range(FAKE_CPU_COUNT):
        files |= {
            f"cpu{c}/topology/physical_package_id": "0",
            f"cpu{c}/topology/core_id": str(c),
            f"cpu{c}/topology/cluster_id": "0",
            f"cpu{c}/topology/core_siblings_list": every,
            f"cpu{c}/topology/cluster_cpus_list": every,
            f"cpu{c}/topology/package_cpus_list": every,
            f"cpu{c}/topology/thread_siblings_list": str(c),
            f"cpu{c}/topology/core_cpus_list": str(c),
            f"cpu{c}/cpufreq/cpuinfo_max_freq": "2400000",
            f"cpu{c}/cpufreq/cpuinfo_min_freq": "600000",
        }
        caches = [(1, "Data", "64K", str(c)), (1, "Instruction", "64K", str(c)),
                  (2, "Unified", "512K", str(c)), (3, "Unified", "4096K", every)]  # fmt: skip
        for i, (level, kind, size, shared) in enumerate(caches):
            index = f"cpu{c}/cache/index{i}"
            files |= {
                f"{index}/level": str(level),
                f"{index}/type": kind,
                f"{index}/size": size,
                f"{index}/shared_cpu_list": shared,
                f"{index}/coherency_line_size": "64",
            }
    for relative, value in files.items():
        path = cpus / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")


# -- running the guest ---------------------------------------------------------------------------


def _run_guest(
    runtime: ArmRuntime,
    arguments: list[str],
    timeout: float,
    what: str,
    todo: str,
    slow_todo: str = "rerun; if it recurs, report the file",
    qemu_options: Sequence[str] = (),
) -> subprocess.CompletedProcess:
    """``arm_guest.py ARGUMENTS`` under qemu, its output captured (LiteRT's delegate chatter
    stays off the terminal). A crash is an LthError naming the file that ran and ending in
    ``todo``; a timeout one ending in ``slow_todo``."""
    root = runtime.root
    command = [
        runtime.qemu, "-cpu", runtime.cpu, "-L", str(root), *qemu_options,
        "-E", "LD_LIBRARY_PATH=/lib/aarch64-linux-gnu:/usr/lib/aarch64-linux-gnu",
        "-E", f"PYTHONHOME={root}/usr", "-E", "PYTHONDONTWRITEBYTECODE=1",
        "-E", "PYTHONNOUSERSITE=1",
        str(root / "usr" / "bin" / "python3.11"), str(GUEST_SCRIPT), *arguments,
    ]  # fmt: skip
    # qemu hands its environment to the guest: the host's PYTHONPATH or LD_LIBRARY_PATH would
    # point the arm64 Python at x86 files.
    environment = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C.UTF-8"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, errors="replace", env=environment,
            timeout=timeout, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as expired:
        running = _running(expired.stdout)
        raise LthError(
            f"the emulated ARM LiteRT did not finish {what} in {timeout:.0f} s"
            f"{f' (running {running!r})' if running else ''}: {slow_todo}"
        ) from None
    if done.returncode != 0:
        running = _running(done.stdout)
        code = done.returncode
        exit_status = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit {code}"
        raise LthError(
            f"the emulated ARM LiteRT crashed on {what}"
            f"{f' while running {running!r}' if running else ''} ({exit_status}: "
            f"{_last_line(done)}): {todo}"
        )
    return done


def _running(stdout: str | bytes | None) -> str | None:
    """The file the guest said it was running last (its ``RUNNING <name>`` lines)."""
    if isinstance(stdout, bytes):
        stdout = stdout.decode(errors="replace")
    names = [line[len("RUNNING ") :] for line in (stdout or "").splitlines()
             if line.startswith("RUNNING ")]  # fmt: skip
    return names[-1] if names else None


def _run(
    command: list[str],
    todo: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """``command`` with its output captured; a failure is one LthError line ending in ``todo``."""
    shown = " ".join(Path(command[0]).name if i == 0 else part for i, part in enumerate(command))
    shown = shown if len(shown) <= 100 else shown[:97] + "..."
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, errors="replace", cwd=cwd, env=env,
            timeout=SETUP_TIMEOUT_S, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        raise LthError(f"{command[0]} not found: {todo}") from None
    except subprocess.TimeoutExpired:
        raise LthError(f"`{shown}` did not finish in {SETUP_TIMEOUT_S} s: {todo}") from None
    if done.returncode != 0:
        if "No space left on device" in f"{done.stdout}{done.stderr}":
            raise LthError(
                f"`{shown}` failed: disk full (no space left on device); the emulated ARM "
                f"LiteRT needs about 200 MB: free space, or set {ARM_CACHE_ENV} to a folder on "
                "another disk, then rerun"
            )
        raise LthError(f"`{shown}` failed ({_last_line(done)}): {todo}")
    return done


def _last_line(done: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in f"{done.stdout}\n{done.stderr}".splitlines() if line.strip()]
    stderr = [line.strip() for line in (done.stderr or "").splitlines() if line.strip()]
    last = (stderr or lines or [f"exit {done.returncode}, no output"])[-1]
    return last if len(last) <= 300 else last[:297] + "..."


def _io_details(content: bytes, what: str) -> tuple[dict, dict]:
    """The file's first input's and first output's details, read by the x86 LiteRT."""
    try:
        interpreter = litert.open_interpreter(content)
    except ValueError as error:
        raise LthError(f"{what} is not a .tflite LiteRT can read: {error}") from None
    return interpreter.get_input_details()[0], interpreter.get_output_details()[0]


def _check_input(values: np.ndarray, source: dict, what: str) -> None:
    """Raises unless ``values`` is a non-empty batch in the input's dtype and per-example shape
    (-1 in the file's shape signature: any size)."""
    dtype = np.dtype(source["dtype"])
    shape = [int(d) for d in source.get("shape_signature", source["shape"])[1:]]
    fits = len(values.shape) == len(shape) + 1 and all(
        want in (-1, got) for want, got in zip(shape, values.shape[1:], strict=True)
    )
    if values.dtype != dtype or not fits or not len(values):
        raise LthError(
            f"{what} is {values.dtype}{list(values.shape)}; the file takes {dtype.name}"
            f"[N, {', '.join(map(str, shape))}] with N >= 1: prepare it with "
            "lth_tf.export.litert.to_input"
        )


def _check_resolver(resolver: str) -> None:
    if resolver not in litert.OpResolverType.__members__:
        raise LthError(
            f"op resolver {resolver!r}: use one of {', '.join(litert.OpResolverType.__members__)}"
        )


def _mapped_range(stdout: str) -> tuple[int, int]:
    """Where the kernel library lies in the guest's memory: from its mapping at file offset 0
    (its load address, which nm's addresses are relative to) to the end of its last mapping."""
    start, end = None, 0
    for line in stdout.splitlines():
        if line.startswith("MAP "):
            fields = line.split()
            low, high = (int(a, 16) for a in fields[1].split("-"))
            if int(fields[3], 16) == 0 and start is None:
                start = low
            end = max(end, high)
    if start is None:
        raise LthError(f"the guest did not report where {KERNEL_LIBRARY} is loaded: rerun")
    return start, end


@functools.lru_cache(maxsize=4)
def _kernel_symbols(library: str) -> tuple[list[int], list[str]]:
    """The library's code symbols (``nm --defined-only``), sorted by address."""
    listed = _run(["nm", "--defined-only", library], f"check {library}, or delete its root")
    symbols = sorted(
        (int(fields[0], 16), fields[2])
        for fields in (line.split() for line in listed.stdout.splitlines())
        if len(fields) == 3 and fields[1] in "tT"
    )
    return [address for address, _ in symbols], [name for _, name in symbols]


_BLOCK_START = re.compile(r"^0x([0-9a-fA-F]+):")


def _symbols_that_ran(
    log_file: Path, mapped: tuple[int, int], symbols: tuple[list[int], list[str]]
) -> set[str]:
    """The library's symbols that hold a block qemu translated (each ``IN:``'s first address)."""
    (load_address, end), (addresses, names) = mapped, symbols
    ran, block_starts = set(), False
    with open(log_file, errors="replace") as lines:
        for line in lines:
            if line.startswith("IN:"):
                block_starts = True
                continue
            match = _BLOCK_START.match(line) if block_starts else None
            if match:
                block_starts = False
                address = int(match.group(1), 16)
                i = bisect.bisect_right(addresses, address - load_address) - 1
                if load_address <= address < end and i >= 0:
                    ran.add(names[i])
    return ran
