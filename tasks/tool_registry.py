"""The tool registry: versioned YAML tool specs, parameter validation, command templating.

Pure functions only (no Docker, no store): everything here is checked before a container starts.
A tool spec is a YAML file under ``tools/<build-dir>/<tool>.yaml``; the Dockerfile beside it
builds the tool's image (``headwater tools build``).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from headwater.errors import InputError

#: The repository's own tool folder (specs and Dockerfiles).
TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
#: String parameters without an explicit pattern or enum must match this (no shell metacharacters).
SAFE_STRING_RE = r"^[A-Za-z0-9 ._+,:=-]{0,200}$"
SIZE_RE = re.compile(r"^(\d+)([kmg]?)$", re.IGNORECASE)
IN_DIR = "/in"
OUT_DIR = "/out"


class UnknownToolError(InputError):
    """The named tool is not in the registry."""


class ParameterError(InputError):
    """A parameter is missing, unknown or outside its schema."""


class ParamSpec(BaseModel):
    """Schema of one tool parameter."""

    type: Literal["string", "integer", "number", "boolean"] = Field(description="Value type.")
    description: str = Field(default="", description="What the parameter does.")
    default: Any = Field(default=None, description="Default value; None makes it required.")
    required: bool = Field(default=False, description="Must be given (no default).")
    minimum: float | None = Field(default=None, description="Smallest allowed number.")
    maximum: float | None = Field(default=None, description="Largest allowed number.")
    enum: list[Any] | None = Field(default=None, description="The allowed values.")
    pattern: str | None = Field(default=None, description="Regex a string value must match.")
    flag: str | None = Field(
        default=None, description="Boolean only: argv token emitted when true (dropped when false)."
    )


class InputSlot(BaseModel):
    """A named input of a tool (files staged read-only under /in)."""

    name: str = Field(description="Slot name, used as {name} in the command.")
    description: str = Field(default="", description="What the slot takes.")
    multiple: bool = Field(default=False, description="Accepts several files in one job.")
    required: bool = Field(default=True, description="A job needs at least one file here.")


class Limits(BaseModel):
    """Resource limits of a tool's container."""

    memory: str = Field(default="512m", description="Memory limit (docker syntax: 512m, 2g).")
    cpus: float = Field(default=1.0, gt=0, le=64, description="CPU quota in cores.")
    pids: int = Field(default=128, ge=8, le=65536, description="Maximum number of processes.")
    tmpfs: str = Field(default="256m", description="Size of the writable tmpfs at /tmp.")

    @field_validator("memory", "tmpfs")
    @classmethod
    def _size(cls, value: str) -> str:
        if not SIZE_RE.match(value):
            raise ValueError(f"{value!r} is not a size like 512m or 2g")
        return value.lower()

    @property
    def memory_bytes(self) -> int:
        """The memory limit in bytes."""
        return parse_size(self.memory)


class ToolSpec(BaseModel):
    """A registered tool: image, command template, parameter schema, limits, outputs."""

    name: str = Field(description="Tool name (kebab-case).")
    version: str = Field(description="Spec version; part of the cache key.")
    description: str = Field(default="", description="One line about the tool.")
    image: str = Field(description="Image reference (a local tag, never :latest).")
    build: str | None = Field(
        default=None, description="Folder under tools/ whose Dockerfile builds the image."
    )
    command: list[str] = Field(min_length=1, description="argv template with {placeholders}.")
    inputs: list[InputSlot] = Field(default_factory=list, description="Input slots.")
    params: dict[str, ParamSpec] = Field(default_factory=dict, description="Parameter schema.")
    limits: Limits = Field(default_factory=Limits, description="Resource limits.")
    timeout: float = Field(default=600, gt=0, le=86400, description="Seconds before a kill.")
    outputs: list[str] = Field(
        default_factory=lambda: ["**/*"], description="Globs (relative to /out) to collect."
    )
    user: str = Field(default="65534:65534", description="uid:gid the tool runs as (not root).")
    source: str | None = Field(default=None, description="File the spec was loaded from.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"{value!r} must be kebab-case ([a-z][a-z0-9-]*)")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if ":" not in value.rsplit("/", 1)[-1] or value.endswith(":latest"):
            raise ValueError(f"image {value!r} needs an explicit version tag (not :latest)")
        return value

    @field_validator("user")
    @classmethod
    def _user(cls, value: str) -> str:
        uid = value.split(":", 1)[0]
        if not uid.isdigit() or int(uid) == 0:
            raise ValueError("user must be a numeric non-root uid[:gid]")
        return value

    @model_validator(mode="after")
    def _placeholders(self) -> ToolSpec:
        known = set(self.params) | {"out"}
        for slot in self.inputs:
            known |= {slot.name, f"{slot.name}_stem", f"{slot.name}_name"}
        for token in self.command:
            for name in PLACEHOLDER_RE.findall(token):
                if name not in known:
                    raise ValueError(f"command placeholder {{{name}}} is not an input or param")
        for name, param in self.params.items():
            if param.flag and param.type != "boolean":
                raise ValueError(f"param {name}: flag is only for booleans")
        return self

    @property
    def uid(self) -> int:
        """Numeric uid of the container user."""
        return int(self.user.split(":", 1)[0])

    @property
    def gid(self) -> int:
        """Numeric gid of the container user (the uid when not given)."""
        parts = self.user.split(":", 1)
        return int(parts[1]) if len(parts) > 1 and parts[1] else int(parts[0])

    def fingerprint(self) -> str:
        """Hash of everything that changes what a run computes (cache key part)."""
        data = self.model_dump(exclude={"description", "source"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def parse_size(text: str) -> int:
    """Bytes of a docker size string like 512m or 2g."""
    m = SIZE_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a size")
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]


def load_spec(path: Path) -> ToolSpec:
    """Load and validate one YAML tool spec."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"tool spec {path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"tool spec {path}: expected a mapping")
    try:
        return ToolSpec(**data, source=str(path))
    except ValidationError as exc:
        raise InputError(f"tool spec {path}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def load_registry(extra_dirs: Sequence[str | Path] | None = None) -> dict[str, ToolSpec]:
    """All tool specs: the repository's tools/ folder, then `extra_dirs` (later wins)."""
    tools: dict[str, ToolSpec] = {}
    for base in [TOOLS_DIR, *[Path(d) for d in extra_dirs or []]]:
        if not base.is_dir():
            continue
        for path in sorted([*base.glob("*.yaml"), *base.glob("*/*.yaml")]):
            spec = load_spec(path)
            tools[spec.name] = spec
    return tools


def get_tool(name: str, extra_dirs: Sequence[str | Path] | None = None) -> ToolSpec:
    """The tool called `name`, or UnknownToolError listing the known ones."""
    tools = load_registry(extra_dirs)
    if name not in tools:
        known = ", ".join(sorted(tools)) or "none"
        raise UnknownToolError(
            f"unknown tool {name!r} (known: {known}); see `headwater tools list`"
        )
    return tools[name]


def build_dir(spec: ToolSpec, extra_dirs: Sequence[str | Path] | None = None) -> Path | None:
    """Folder with the Dockerfile of the tool's image, if it has one."""
    if not spec.build:
        return None
    for base in [*[Path(d) for d in extra_dirs or []], TOOLS_DIR]:
        if (base / spec.build / "Dockerfile").is_file():
            return base / spec.build
    if spec.source and (Path(spec.source).parent / "Dockerfile").is_file():
        return Path(spec.source).parent
    return None


def coerce_param(name: str, spec: ParamSpec, value: Any) -> Any:
    """Convert a CLI string or JSON value to the parameter's type; raise ParameterError."""
    try:
        if spec.type == "boolean":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if spec.type == "integer":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected an integer")
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        if spec.type == "number":
            if isinstance(value, bool):
                raise ValueError("expected a number")
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError("expected a finite number")
            return number
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("expected a string")
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"parameter {name}={value!r}: {exc}") from None


def validate_params(spec: ToolSpec, given: dict[str, Any]) -> dict[str, Any]:
    """Check `given` against the tool's schema; return every parameter with defaults filled."""
    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        allowed = ", ".join(sorted(spec.params)) or "none"
        raise ParameterError(
            f"tool {spec.name}: unknown parameter(s) {', '.join(unknown)} (allowed: {allowed})"
        )
    out: dict[str, Any] = {}
    for name, pspec in spec.params.items():
        if name not in given or given[name] is None:
            if pspec.default is None:
                if pspec.required or pspec.type != "boolean":
                    if pspec.required:
                        raise ParameterError(f"tool {spec.name}: parameter {name} is required")
                    continue
                out[name] = False
                continue
            value = coerce_param(name, pspec, pspec.default)
        else:
            value = coerce_param(name, pspec, given[name])
        where = f"tool {spec.name}: parameter {name}={value!r}"
        if pspec.enum is not None and value not in pspec.enum:
            raise ParameterError(f"{where} is not one of {pspec.enum}")
        if pspec.type in ("integer", "number"):
            if pspec.minimum is not None and value < pspec.minimum:
                raise ParameterError(f"{where} is below the minimum {pspec.minimum:g}")
            if pspec.maximum is not None and value > pspec.maximum:
                raise ParameterError(f"{where} is above the maximum {pspec.maximum:g}")
        pattern = pspec.pattern or SAFE_STRING_RE
        if pspec.type == "string" and pspec.enum is None and not re.fullmatch(pattern, value):
            raise ParameterError(f"{where} does not match {pattern}")
        out[name] = value
    return out


def parse_param_args(pairs: list[str]) -> dict[str, str]:
    """Turn CLI `k=v` strings into a dict; raise ParameterError on a malformed pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--param {pair!r}: expected NAME=VALUE")
        out[key.strip()] = value
    return out


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def safe_input_name(name: str) -> str:
    """A file name safe to stage under /in: no separators, `..`, control chars or leading dots.

    Unsafe characters are replaced by `_` (a safe rename); a name with nothing usable left
    raises InputError naming it.
    """
    text = unicodedata.normalize("NFC", name)
    text = _CONTROL.sub("_", text)
    text = text.replace("/", "_").replace("\\", "_")
    while ".." in text:
        text = text.replace("..", "_")
    text = re.sub(r"[^\w.+=@,-]", "_", text).lstrip(".-_ ")
    text = re.sub(r"_+", "_", text)
    if len(text) > 120:
        stem, dot, ext = text.rpartition(".")
        text = (stem[:100] + dot + ext[:19]) if dot and len(ext) < 20 else text[:120]
    if not text or not any(c.isalnum() for c in text):
        raise InputError(f"input name {name!r} has no usable characters")
    return text


def unique_names(names: list[str]) -> list[str]:
    """Safe, distinct staging names for `names` (`a.sdf`, `a-1.sdf`, ...)."""
    seen: set[str] = set()
    out = []
    for name in names:
        safe = safe_input_name(name)
        candidate, n = safe, 0
        while candidate in seen:
            n += 1
            stem, dot, ext = safe.rpartition(".")
            candidate = f"{stem}-{n}.{ext}" if dot and stem else f"{safe}-{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def assign_inputs(spec: ToolSpec, inputs: dict[str, list[str]] | list[str]) -> dict[str, list[str]]:
    """Map inputs to the tool's slots: a dict by slot name, or a list for the first slot.

    A list with several files for a single-file first slot is kept as is: the caller fans it
    out (one job per file).
    """
    if not spec.inputs:
        if inputs:
            raise InputError(f"tool {spec.name} takes no inputs")
        return {}
    if isinstance(inputs, list):
        inputs = {spec.inputs[0].name: list(inputs)}
    slots = {s.name: s for s in spec.inputs}
    unknown = sorted(set(inputs) - set(slots))
    if unknown:
        raise InputError(
            f"tool {spec.name}: unknown input slot(s) {', '.join(unknown)} "
            f"(slots: {', '.join(slots)})"
        )
    for slot in spec.inputs:
        if slot.required and not inputs.get(slot.name):
            raise InputError(f"tool {spec.name}: input {slot.name} is required")
    for name, files in inputs.items():
        if not slots[name].multiple and len(files) > 1 and name != spec.inputs[0].name:
            raise InputError(f"tool {spec.name}: input {name} takes one file, got {len(files)}")
    return {k: list(v) for k, v in inputs.items()}


def split_jobs(
    spec: ToolSpec, inputs: dict[str, list[str]], per_file: bool = False
) -> list[dict[str, list[str]]]:
    """One job per file of the first slot when it takes one file (or `per_file`); else one job."""
    if not spec.inputs:
        return [{}]
    first = spec.inputs[0]
    files = inputs.get(first.name, [])
    if (first.multiple and not per_file) or len(files) <= 1:
        return [inputs]
    return [{**inputs, first.name: [f]} for f in files]


def render_command(
    spec: ToolSpec, params: dict[str, Any], staged: dict[str, list[str]]
) -> list[str]:
    """The container argv: placeholders filled from validated params and staged file names.

    Args:
        spec: The tool.
        params: Validated parameters (`validate_params`).
        staged: Slot name -> safe file names staged under /in (`unique_names`).

    Returns:
        The argv list; a token that is exactly a multi-file slot expands to one token per file,
        a token that is exactly a false boolean (or an absent optional value) is dropped.
    """
    values: dict[str, str | list[str] | None] = {"out": OUT_DIR}
    for slot in spec.inputs:
        names = staged.get(slot.name, [])
        paths = [str(PurePosixPath(IN_DIR) / n) for n in names]
        values[slot.name] = paths if slot.multiple else (paths[0] if paths else None)
        first = names[0] if names else None
        values[f"{slot.name}_name"] = first
        values[f"{slot.name}_stem"] = PurePosixPath(first).stem if first else None
    for name, pspec in spec.params.items():
        value = params.get(name)
        if pspec.type == "boolean":
            values[name] = (pspec.flag or "true") if value else (None if pspec.flag else "false")
        else:
            values[name] = None if value is None else _fmt(value)
    argv: list[str] = []
    for token in spec.command:
        whole = PLACEHOLDER_RE.fullmatch(token)
        if whole:
            value = values[whole.group(1)]
            if value is None:
                continue
            argv.extend(value if isinstance(value, list) else [value])
            continue

        def fill(m: re.Match[str], token: str = token) -> str:
            value = values[m.group(1)]
            if isinstance(value, list):
                raise InputError(
                    f"tool {spec.name}: {{{m.group(1)}}} inside {token!r} is multi-file"
                )
            return "" if value is None else value

        argv.append(PLACEHOLDER_RE.sub(fill, token))
    return argv


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def cache_key(
    spec: ToolSpec, image_id: str, params: dict[str, Any], input_hashes: dict[str, list[str]]
) -> str:
    """Key of a job's result: tool fingerprint, image id, parameters and input content hashes."""
    data = {
        "tool": spec.name,
        "spec": spec.fingerprint(),
        "image": image_id,
        "params": params,
        "inputs": {k: list(v) for k, v in sorted(input_hashes.items())},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
