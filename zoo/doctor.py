"""`zoo doctor`: will the OD API trainer start in this Python environment?

The most common reason ``model_main_tf2.py`` never starts is the environment,
not the config: a TensorFlow without ``tf.compat.v1.estimator`` (2.16+), Keras
3, a tf-slim that calls what TF 2.13 moved, a tf-models-official built for
another TF, protos never compiled or compiled for another protobuf.

``gather(python)`` is the I/O edge: it runs the interpreter once to learn its
``sys.path`` and where ``object_detection`` and ``tf_slim`` live (``find_spec``
locates a package without importing it), then reads installed distributions'
metadata, tf-slim's ``tfexample_decoder.py`` and the headers of
``object_detection/protos/*_pb2.py``. ``diagnose(env)`` is pure. Nothing here
imports TensorFlow, in this process or in the one probed.

Findings use the words of `zoo check` (severity ``error``: the trainer cannot
start; ``warning``: it starts but something is wrong; ``note``: information).
They are not ``zoo.config.checks.Finding``: the fetch core must not import
``zoo.config`` (tests/test_architecture.py), and an environment has no field or
line, but a package.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import Distribution
from pathlib import Path
from typing import Any

from zoo.errors import UsageError

SEVERITIES = ("error", "warning", "note")  # the values of zoo.config.checks.Severity, in order
# Distributions that install the `tensorflow` package, most specific last:
# Windows' `tensorflow` depends on `tensorflow-intel`, both of one version.
TF_DISTS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tensorflow-macos",
            "tensorflow-aarch64", "tensorflow-rocm", "tf-nightly", "tf-nightly-cpu")  # fmt: skip
GPU_BUILDS = ("tensorflow", "tensorflow-gpu", "tf-nightly")  # on Linux these load CUDA when they find it
PACKAGES = ("keras", "tf-keras", "tf-slim", "tf-models-official", "protobuf", "pycocotools")
LEGACY_KERAS = "TF_USE_LEGACY_KERAS"
PROTOBUF_IMPLEMENTATION = "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"
ENV_VARS = (LEGACY_KERAS, PROTOBUF_IMPLEMENTATION)
LAST_TF = "2.15"  # the last TensorFlow with tf.compat.v1.estimator
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")

# Runs in the probed interpreter: its sys.path and where two packages live.
# '' (-c's working directory) is dropped: `python object_detection/model_main_tf2.py` does not see it.
_PROBE = """
import importlib.util, json, sys
sys.path[:] = [p for p in sys.path if p]
def where(name):
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    places = list(spec.submodule_search_locations or []) if spec else []
    return places[0] if places else None
print(json.dumps({"executable": sys.executable, "version": list(sys.version_info[:3]), "platform": sys.platform,
                  "path": sys.path, "packages": {n: where(n) for n in ("object_detection", "tf_slim")}}))
"""

_VERSION_COMMENT = re.compile(r"^# Protobuf Python Version: (\S+)", re.MULTILINE)
_VALIDATE = re.compile(r"ValidateProtobufRuntimeVersion\(\s*[\w.]+,\s*(\d+),\s*(\d+),\s*(\d+),\s*'([^']*)'")
_BUILDER = "from google.protobuf.internal import builder"
_TF_REQUIREMENT = re.compile(r"^tensorflow\s*([<>=!~][^;]*)?(?:;.*)?$")
_CUDA_EXTRA = re.compile(r"""^([A-Za-z0-9._-]+).*extra\s*==\s*["']and-cuda["']""")


# -- facts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    name: str  # normalized (PEP 503)
    version: str
    path: Path  # its .dist-info (or .egg-info) directory
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Gencode:
    """What a generated ``_pb2.py`` needs from the protobuf runtime."""

    version: str | None  # from ValidateProtobufRuntimeVersion or the version comment; None in older gencode
    validates: bool = False  # calls runtime_version.ValidateProtobufRuntimeVersion (protoc 26+)
    builder: bool = False  # uses google.protobuf.internal.builder (protoc 3.20+)


@dataclass(frozen=True)
class Environment:
    python: str
    python_version: tuple[int, ...]
    platform: str
    dists: Mapping[str, Dist]  # by normalized name; the first on sys.path wins, as for imports
    env: Mapping[str, str] = field(default_factory=dict)  # ENV_VARS as set
    object_detection: Path | None = None
    protos: Mapping[str, Gencode] = field(default_factory=dict)  # by proto name (without _pb2.py)
    uncompiled: tuple[str, ...] = ()  # X.proto without X_pb2.py
    runtime_version_module: bool = False  # google/protobuf/runtime_version.py exists (protobuf 5.26+)
    slim_decoder: Path | None = None
    slim_calls: tuple[str, ...] = ()  # control_flow_ops.<name>( calls in it
    nvidia_driver: bool = False
    system_cudnn: bool = False

    @property
    def tf(self) -> Dist | None:
        return next((self.dists[name] for name in TF_DISTS if name in self.dists), None)

    def version(self, name: str) -> tuple[int, ...] | None:
        dist = self.dists.get(name)
        return version_tuple(dist.version) if dist else None


def _tf_version(env: Environment) -> tuple[int, ...] | None:
    return version_tuple(env.tf.version) if env.tf else None


def gather(python: str | None = None) -> Environment:
    """The facts about ``python``'s environment (default: the running interpreter's)."""
    probe = _probe(python or sys.executable)
    dirs = [Path(p) for p in probe["path"]]
    dists = _distributions(dirs)
    od = _package_dir(probe["packages"]["object_detection"])
    slim = _package_dir(probe["packages"]["tf_slim"])
    protos, uncompiled = _protos(od / "protos") if od else ({}, ())
    decoder = slim / "data" / "tfexample_decoder.py" if slim else None
    protobuf = dists.get("protobuf")
    driver = NVIDIA_DRIVER.exists()
    return Environment(
        python=probe["executable"] or str(python), python_version=tuple(probe["version"]),
        platform=probe["platform"], dists=dists, env={k: os.environ[k] for k in ENV_VARS if k in os.environ},
        object_detection=od, protos=protos, uncompiled=uncompiled,
        runtime_version_module=bool(protobuf) and (protobuf.path.parent / "google/protobuf/runtime_version.py").is_file(),
        slim_decoder=decoder if decoder and decoder.is_file() else None, slim_calls=_slim_calls(decoder),
        nvidia_driver=driver, system_cudnn=driver and _system_cudnn(),
    )  # fmt: skip


def _probe(python: str) -> dict[str, Any]:
    try:
        done = subprocess.run([python, "-c", _PROBE], check=False, capture_output=True, text=True, timeout=120)
    except OSError as exc:
        raise UsageError(f"--python {python}: cannot run it: {exc.strerror or exc}") from None
    lines = (done.stderr or done.stdout).strip().splitlines()
    try:
        if done.returncode == 0:
            return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        pass
    raise UsageError(f"--python {python}: not a Python 3 interpreter ({lines[-1] if lines else 'no output'})")


def _distributions(dirs: list[Path]) -> dict[str, Dist]:
    found: dict[str, Dist] = {}
    for path in _metadata_dirs(dirs):
        name = normalize(path.name.rsplit(".", 1)[0].split("-")[0])
        if name in found or not (name in PACKAGES or name in TF_DISTS or name.startswith("nvidia-")):
            continue
        dist = Distribution.at(path)
        if dist.version:  # a directory without metadata installs nothing importlib would see
            found[name] = Dist(name, dist.version, path, tuple(dist.requires or ()))
    return found


def _metadata_dirs(dirs: list[Path]) -> Iterator[Path]:
    for directory in dirs:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:  # a zip, a missing entry: nothing installed there
            continue
        yield from (Path(e.path) for e in entries if e.name.endswith((".dist-info", ".egg-info")) and e.is_dir())


def _package_dir(location: str | None) -> Path | None:
    return Path(location) if location else None


def _protos(directory: Path) -> tuple[dict[str, Gencode], tuple[str, ...]]:
    compiled = {p.name[: -len("_pb2.py")]: p for p in directory.glob("*_pb2.py")}
    sources = {p.stem for p in directory.glob("*.proto")}
    return {name: gencode(_head(path)) for name, path in sorted(compiled.items())}, tuple(sorted(sources - set(compiled)))


def _head(path: Path, size: int = 4096) -> str:
    # The version comment, the validation call and the builder import all sit above the descriptors.
    with path.open("rb") as file:
        return file.read(size).decode("utf-8", "replace")


def gencode(head: str) -> Gencode:
    """What the first lines of a ``_pb2.py`` say about the protoc that wrote it."""
    validate = _VALIDATE.search(head)
    comment = _VERSION_COMMENT.search(head)
    version = ".".join(validate.groups()[:3]) + validate.group(4) if validate else comment.group(1) if comment else None
    return Gencode(version, validates=bool(validate), builder=_BUILDER in head)


def _slim_calls(decoder: Path | None) -> tuple[str, ...]:
    if decoder is None or not decoder.is_file():
        return ()
    text = decoder.read_text(encoding="utf-8", errors="replace")
    return tuple(name for name in ("case", "cond") if f"control_flow_ops.{name}(" in text)


def _system_cudnn() -> bool:
    import ctypes.util  # runs ldconfig: only asked when an NVIDIA driver is there

    return ctypes.util.find_library("cudnn") is not None


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def version_tuple(text: str) -> tuple[int, ...]:
    """The leading numbers of a version: "2.16.0rc1" -> (2, 16, 0). Enough for these rules."""
    match = re.match(r"\d+(\.\d+)*", text)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


# -- findings --------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    id: str
    severity: str  # "error" (the trainer cannot start), "warning" or "note", as zoo check's Severity
    package: str
    message: str
    trainer_error: str | None = None  # what the trainer raises, quoted; None when it raises nothing known
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def render(self, source: str) -> str:
        lines = [f"{source}: {self.severity} [{self.id}] {self.package}: {self.message}"]
        lines += [f"    trainer: {self.trainer_error}"] if self.trainer_error else []
        return "\n".join(lines + ([f"    fix: {self.fix}"] if self.fix else []))


def diagnose(env: Environment) -> list[Finding]:
    """Every finding for ``env``, errors first."""
    rules = (_tensorflow, _keras, _slim, _models_official, _object_detection, _pycocotools, _gpu)
    findings = [finding for rule in rules for finding in rule(env)]
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def _mm(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version[:2]))


def _too_new(env: Environment) -> bool:
    tf = _tf_version(env)
    return tf is not None and tf[:2] > version_tuple(LAST_TF)


def _trainable_mm(env: Environment) -> str:
    """The TensorFlow minor version to pin companions to: the installed one, or LAST_TF when it is too new."""
    tf = _tf_version(env)
    return LAST_TF if tf is None or _too_new(env) else _mm(tf)


def _tf_pin(env: Environment) -> str:
    note = f" (TF {LAST_TF} has no wheels for Python 3.12+: use a Python 3.11 venv)" if env.python_version >= (3, 12) else ""
    return f'pip install "tensorflow=={LAST_TF}.*" "tf-models-official=={LAST_TF}.*"{note}'


def _tensorflow(env: Environment) -> list[Finding]:
    tf = env.tf
    if tf is None:
        return [Finding("tensorflow-missing", "error", "tensorflow", "no TensorFlow distribution is installed",
                        "ModuleNotFoundError: No module named 'tensorflow'", _tf_pin(env))]  # fmt: skip
    found = []
    others = [d for d in env.dists.values() if d.name in TF_DISTS and d.version != tf.version]
    if others:
        found.append(Finding(
            "tensorflow-several", "error", tf.name,
            f"{tf.name} {tf.version} and {', '.join(f'{d.name} {d.version}' for d in others)} all install the one "
            "tensorflow/ package: its files are a mix of both versions",
            None, f"pip uninstall -y {' '.join(d.name for d in [tf, *others])} && {_tf_pin(env)}",
        ))  # fmt: skip
    if _too_new(env):
        found.append(Finding(
            "tensorflow-too-new", "error", tf.name,
            f"{tf.name} {tf.version} has no tf.compat.v1.estimator (removed in 2.16), which object_detection/inputs.py "
            f"imports: the OD API trains on TensorFlow {LAST_TF} or older",
            "ImportError: cannot import name 'estimator' from 'tensorflow.compat.v1'", _tf_pin(env),
        ))  # fmt: skip
    return found


def _keras(env: Environment) -> list[Finding]:
    tf, keras = _tf_version(env), env.version("keras")
    legacy = env.env.get(LEGACY_KERAS) in ("1", "true", "True")  # what TensorFlow's Keras loader accepts
    if tf is None:
        return []
    if tf[:2] >= (2, 16) and legacy:
        return _legacy_keras(env, tf)
    if keras is None or keras[0] < 3:
        return []
    fix = (f'pip install "tf-keras=={_mm(tf)}.*" and export {LEGACY_KERAS}=1' if tf[:2] >= (2, 16)
           else f'pip install "keras=={_mm(tf)}.*"')  # fmt: skip
    return [Finding(
        "keras3", "error", "keras",
        f"tf.keras is Keras {env.dists['keras'].version}: the OD API's Keras feature extractors and layers need Keras 2"
        + (f" (tf-keras with {LEGACY_KERAS}=1)" if tf[:2] >= (2, 16) else ""),
        "AttributeError: module 'keras._tf_keras.keras.layers' has no attribute 'experimental'", fix,
    )]  # fmt: skip


def _legacy_keras(env: Environment, tf: tuple[int, ...]) -> list[Finding]:
    """TF 2.16+ with TF_USE_LEGACY_KERAS set: tf.keras is tf-keras, which must be there and match TF."""
    tf_keras = env.version("tf-keras")
    if tf_keras is None:
        return [Finding("tf-keras-missing", "error", "tf-keras", f"{LEGACY_KERAS} is set but tf-keras is not installed",
                        "ImportError: Keras cannot be imported. Check that it is installed.",
                        f'pip install "tf-keras=={_mm(tf)}.*"')]  # fmt: skip
    if tf_keras[:2] != tf[:2]:
        return [Finding("tf-keras-version", "warning", "tf-keras",
                        f"tf-keras {env.dists['tf-keras'].version} is built for TensorFlow {_mm(tf_keras)}, "
                        f"not {_dotted(tf)}", None, f'pip install "tf-keras=={_mm(tf)}.*"')]  # fmt: skip
    return []


def _slim(env: Environment) -> list[Finding]:
    slim, tf = env.dists.get("tf-slim"), _tf_version(env)
    if slim is None:
        return [Finding("tf-slim-missing", "error", "tf-slim", "tf-slim is not installed; the OD API imports it",
                        "ModuleNotFoundError: No module named 'tf_slim'", "pip install tf-slim")]  # fmt: skip
    if tf is None or tf[:2] < (2, 13) or not env.slim_calls:
        return []
    calls = "/".join(env.slim_calls)
    return [Finding(
        "tf-slim-control-flow", "error", "tf-slim",
        f"tf-slim {slim.version}'s tfexample_decoder.py calls control_flow_ops.{calls}, which TensorFlow 2.13 moved "
        f"(TF here: {_dotted(tf)}): decoding the first TFRecord example fails",
        f"AttributeError: module 'tensorflow.python.ops.control_flow_ops' has no attribute '{env.slim_calls[0]}'",
        'pip install "tensorflow==2.12.*" "tf-models-official==2.12.*", or in '
        f"{env.slim_decoder} call tf.case and tf.compat.v1.cond (import tensorflow as tf) instead",
    )]  # fmt: skip


def _models_official(env: Environment) -> list[Finding]:
    official, tf = env.dists.get("tf-models-official"), env.tf
    if official is None:
        return [Finding("models-official-missing", "error", "tf-models-official",
                        "tf-models-official is not installed; the OD API's model builder imports it",
                        "ModuleNotFoundError: No module named 'official'",
                        f'pip install "tf-models-official=={_trainable_mm(env)}.*"')]  # fmt: skip
    if tf is None:
        return []
    wanted = next((m.group(1) or "" for r in official.requires if (m := _TF_REQUIREMENT.match(r.strip()))), None)
    found = []
    if version_tuple(official.version)[:2] != version_tuple(tf.version)[:2]:
        pip_check = f" (pip check: tf-models-official {official.version} has requirement tensorflow{wanted}, but you have {tf.name} {tf.version})" if wanted else ""
        found.append(Finding(
            "models-official-version", "error", "tf-models-official",
            f"tf-models-official {official.version} is built for TensorFlow {_mm(version_tuple(official.version))}, "
            f"not {tf.version}{pip_check}",
            None, _tf_pin(env) if _too_new(env) else f'pip install "tf-models-official=={_trainable_mm(env)}.*"',
        ))  # fmt: skip
    if wanted is not None and "tensorflow" not in env.dists:
        found.append(Finding(
            "models-official-flavour", "warning", "tf-models-official",
            f"tf-models-official requires the tensorflow distribution, not {tf.name}: the next pip install that "
            f"resolves it installs tensorflow over {tf.name}",
            None, f'pip uninstall -y {tf.name} && pip install "tensorflow=={tf.version}"',
        ))  # fmt: skip
    return found


def _object_detection(env: Environment) -> list[Finding]:
    if env.object_detection is None:
        return [Finding(
            "object-detection-missing", "error", "object_detection", f"object_detection is not importable by {env.python}",
            "ModuleNotFoundError: No module named 'object_detection'",
            "cd models/research && protoc object_detection/protos/*.proto --python_out=. && "
            "cp object_detection/packages/tf2/setup.py . && python -m pip install .",
        )]  # fmt: skip
    research = env.object_detection.parent
    if env.uncompiled or not env.protos:
        first = env.uncompiled[0] if env.uncompiled else "string_int_label_map"
        what = f"{len(env.uncompiled)} of {len(env.uncompiled) + len(env.protos)}" if env.uncompiled else "no"
        return [Finding(
            "protos-not-compiled", "error", "object_detection",
            f"{what} protos in {env.object_detection / 'protos'} are compiled to _pb2.py",
            f"ImportError: cannot import name '{first}_pb2' from 'object_detection.protos'",
            f"cd {research} && protoc object_detection/protos/*.proto --python_out=.",
        )]  # fmt: skip
    return _gencode_findings(env, research)


def _gencode_findings(env: Environment, research: Path) -> list[Finding]:
    protobuf = env.dists.get("protobuf")
    if protobuf is None:
        return []
    by_gencode: dict[Gencode, list[str]] = {}
    for name, code in env.protos.items():
        by_gencode.setdefault(code, []).append(name)
    regenerate = (f"cd {research} && protoc object_detection/protos/*.proto --python_out=. with protoc "
                  f"{_protoc_for(protobuf.version)} (protobuf {protobuf.version}'s compiler)")  # fmt: skip
    found = []
    for code, names in by_gencode.items():
        verdict = _gencode_verdict(env, code, protobuf.version, names[0])
        if verdict:
            severity, problem, error = verdict
            where = f"{len(names)} _pb2.py (e.g. {names[0]}_pb2.py)"
            found.append(Finding("protos-protobuf", severity, "protobuf", f"{where}: {problem}", error, regenerate))
    return found


def _gencode_verdict(env: Environment, code: Gencode, runtime: str, name: str) -> tuple[str, str, str | None] | None:
    """(severity, what is wrong, the trainer's error) for gencode ``code`` on protobuf ``runtime``, or None."""
    have, made = version_tuple(runtime), version_tuple(code.version or "")
    if not code.builder:
        if have >= (4, 21) and env.env.get(PROTOBUF_IMPLEMENTATION) != "python":
            return ("error", f"generated by protoc older than 3.20, which protobuf {runtime} (upb) refuses",
                    ("TypeError: Descriptors cannot be created directly. If this call came from a _pb2.py file, your "
                     "generated code is out of date and must be regenerated with protoc >= 3.19.0."))  # fmt: skip
        return None
    if have < (3, 20):
        return ("error", f"generated by protoc 3.20+, whose builder module protobuf {runtime} lacks",
                "ImportError: cannot import name 'builder' from 'google.protobuf.internal'")  # fmt: skip
    if code.validates and not env.runtime_version_module:
        return ("error", f"gencode {code.version} checks the runtime with runtime_version, which protobuf {runtime} lacks",
                "ImportError: cannot import name 'runtime_version' from 'google.protobuf'")  # fmt: skip
    if code.validates and have < made:
        return ("error", f"gencode {code.version} is newer than the protobuf runtime {runtime}",
                ("google.protobuf.runtime_version.VersionError: Detected incompatible Protobuf Gencode/Runtime versions "
                 f"when loading object_detection/protos/{name}.proto: gencode {code.version} runtime {runtime}. Runtime "
                 "version cannot be older than the linked gencode version."))  # fmt: skip
    if made and made[0] != have[0]:
        return ("warning", (f"gencode {code.version} and the protobuf runtime {runtime} differ in major version, "
                            "which protobuf does not promise to support"), None)  # fmt: skip
    return None


def _protoc_for(runtime: str) -> str:
    # protobuf 4.25.3 is protoc 25.3, 5.27.2 is 27.2; 3.x shares its number.
    parts = runtime.split(".")
    return ".".join(parts[1:]) if version_tuple(runtime)[:1] >= (4,) else runtime


def _pycocotools(env: Environment) -> list[Finding]:
    if "pycocotools" in env.dists:
        return []
    return [Finding("pycocotools-missing", "error", "pycocotools",
                    "pycocotools is not installed; model_lib_v2 imports the COCO evaluation, which imports it",
                    "ModuleNotFoundError: No module named 'pycocotools'", "pip install pycocotools")]  # fmt: skip


def _gpu(env: Environment) -> list[Finding]:
    tf = env.tf
    if tf is None or env.platform != "linux" or tf.name not in GPU_BUILDS:
        return []
    if not env.nvidia_driver:
        return [Finding("no-gpu", "note", tf.name, f"no NVIDIA driver ({NVIDIA_DRIVER} is missing): training runs on the CPU")]
    cuda = [normalize(m.group(1)) for r in tf.requires if (m := _CUDA_EXTRA.match(r.strip()))]
    missing = [name for name in cuda if name not in env.dists]
    if env.system_cudnn or (cuda and not missing):
        return []
    what = f"{', '.join(missing)} not installed" if missing else "no cuDNN found by the dynamic loader"
    return [Finding(
        "gpu-libraries", "warning", tf.name, f"{tf.name} {tf.version} is a GPU build and the machine has an NVIDIA "
        f"driver, but {what}: training runs on the CPU",
        "Cannot dlopen some GPU libraries. Please make sure the missing libraries mentioned above are installed "
        "properly if you would like to use GPU.",
        f'pip install "tensorflow[and-cuda]=={tf.version}"' if cuda else "install CUDA and cuDNN for this TensorFlow",
    )]  # fmt: skip


# -- reports ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    env: Environment
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def summary(self) -> str:
        counts = {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}
        verdict = "the trainer cannot start" if self.errors else "the trainer can start"
        return ", ".join(f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items()) + f": {verdict}"

    def headline(self) -> str:
        """One line: the versions that matter and the verdict, for `zoo config`."""
        ids = ", ".join(dict.fromkeys(f.id for f in self.errors))
        verdict = f"the trainer cannot start ({ids}; see `zoo doctor`)" if ids else "the trainer can start"
        tf = f"{self.env.tf.name} {self.env.tf.version}" if self.env.tf else "no tensorflow"
        return f"environment: python {_dotted(self.env.python_version)}, {tf}: {verdict}"

    def facts(self) -> dict[str, str | None]:
        """What was found, package by package (None: not installed)."""
        env = self.env
        versions = {name: env.dists[name].version if name in env.dists else None for name in PACKAGES}
        return {
            "python": f"{env.python} ({_dotted(env.python_version)})",
            "tensorflow": f"{env.tf.version} ({env.tf.name})" if env.tf else None,
            **versions,
            LEGACY_KERAS: env.env.get(LEGACY_KERAS),
            "object_detection": str(env.object_detection) if env.object_detection else None,
            "protos": _protos_fact(env),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"ok": not self.errors, "python": self.env.python, "environment": self.facts(),
                "summary": self.summary(), "findings": [f.to_dict() for f in self.findings]}  # fmt: skip

    def render(self) -> str:
        facts = [f"{key}: {value if value is not None else '-'}" for key, value in self.facts().items()]
        return "\n".join([*facts, self.render_findings()])

    def render_findings(self) -> str:
        """The findings and the summary line, as `zoo check` prints a config's."""
        return "\n".join([*(f.render(self.env.python) for f in self.findings), f"{self.env.python}: {self.summary()}"])


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _protos_fact(env: Environment) -> str | None:
    if env.object_detection is None:
        return None
    gencodes = sorted({code.version or ("3.20+ (unversioned)" if code.builder else "< 3.20") for code in env.protos.values()})
    compiled = f"{len(env.protos)} compiled, gencode {', '.join(gencodes)}" if env.protos else "none compiled"
    return compiled + (f", {len(env.uncompiled)} not compiled" if env.uncompiled and env.protos else "")


def doctor(python: str | None = None) -> Report:
    """Check ``python``'s environment (default: this one) for what stops the OD API trainer."""
    env = gather(python)
    return Report(env, diagnose(env))
