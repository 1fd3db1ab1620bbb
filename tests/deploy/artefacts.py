"""Read the deploy artefacts the way their tools do: the Dockerfile's instructions, Compose with its
interpolation, Kubernetes manifests, .dockerignore patterns. No container engine is needed for any of it."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml


class StrictLoader(yaml.SafeLoader):
    """YAML as Kubernetes and Compose read it: a key given twice in one mapping is an error, not a silent
    last-one-wins."""


def _mapping(loader: StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


def load_yaml_all(text: str) -> list[Any]:
    return [doc for doc in yaml.load_all(text, Loader=StrictLoader) if doc]  # noqa: S506


REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_DIR = DEPLOY / "compose"
K8S = DEPLOY / "k8s"
# Manifests of kinds that only exist with a CRD installed: no schema ships for them, they are checked field by field.
CRD_MANIFESTS = (K8S / "optional" / "servicemonitor.yaml",)
# Files in deploy/k8s/ a kustomization deliberately leaves out.
NOT_IN_KUSTOMIZATION = (K8S / "secret.example.yaml",)


# --- Dockerfile ---------------------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None

    @property
    def env(self) -> dict[str, str]:
        """ENV of this stage, in order (`ENV K=V K2="v 2"`), `$PATH`-style references left as written."""
        env: dict[str, str] = {}
        for args in self.all("ENV"):
            for word in shlex.split(args):
                name, _, value = word.partition("=")
                env[name] = value
        return env

    def exec_form(self, keyword: str) -> list[str]:
        """ENTRYPOINT / CMD in exec (JSON) form; the shell form is refused, it would not get signals."""
        args = self.last(keyword)
        assert args is not None, f"no {keyword} in stage {self.name}"
        assert args.startswith("["), f"{keyword} must use the exec form: {args}"
        return json.loads(args)


def dockerfile_stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The build stages, each with its instructions (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append((pending + line).strip())
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name=name, base=words[0]))
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return stages


def runtime_stage() -> Stage:
    return dockerfile_stages()[-1]


def image_command() -> list[str]:
    """What a container of the image runs by default: ENTRYPOINT + CMD."""
    stage = runtime_stage()
    return stage.exec_form("ENTRYPOINT") + stage.exec_form("CMD")


def without_init(command: list[str]) -> list[str]:
    """The command an init process (tini) hands over to: everything after its `--`."""
    if command and Path(command[0]).name == "tini":
        return command[command.index("--") + 1 :]
    return command


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's command (exec form), its options stripped."""
    args = runtime_stage().last("HEALTHCHECK")
    assert args is not None, "the runtime stage has no HEALTHCHECK"
    match = re.search(r"\bCMD\s+(\[.*\])\s*$", args)
    assert match, f"HEALTHCHECK must use CMD in exec form: {args}"
    return json.loads(match.group(1))


# --- .dockerignore -----------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, regex) per line, in order: Docker's rules, the last matching pattern wins."""
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        line = line.lstrip("!").strip().strip("/")
        patterns.append((exclude, _pattern_regex(line)))
    return patterns


def in_build_context(path: str) -> bool:
    """Whether a repository path is sent to the builder: a pattern matches the path or one of its parents."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for exclude, regex in dockerignore_patterns():
        if any(regex.match(candidate) for candidate in candidates):
            included = not exclude
    return included


# --- Compose -----------------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<default>[^}]*))?\}"
                       r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR and $$ for a literal $."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("plain")
        op, default = match.group("op"), match.group("default") or ""
        value = variables.get(name)
        if op == ":-" and not value:
            return default
        if op == "-" and value is None:
            return default
        if op in (":?", "?") and not value:
            raise KeyError(f"required variable {name} is not set")
        return value or ""

    return _VARIABLE.sub(substitute, text)


def compose_variables(text: str) -> set[str]:
    """Every variable the Compose file interpolates."""
    return {m.group("braced") or m.group("plain") for m in _VARIABLE.finditer(text) if m.group(0) != "$$"}


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _interpolate_tree(node: Any, variables: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, variables) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(value, variables) for value in node]
    return node


# What deploy/compose.yaml requires to be set (${X:?...}): values the tests give unless they say otherwise.
COMPOSE_REQUIRED = {"RECALLD_SECRETS_KEY": "x" * 43 + "="}


def compose(variables: dict[str, str] | None = None) -> dict[str, Any]:
    """deploy/compose.yaml as Compose sees it with these variables (besides the required ones, none set: every
    default applies). Like Compose, the YAML is parsed first and its strings interpolated after (so `${X:-off}`
    stays a string)."""
    return _interpolate_tree(raw_compose(), {**COMPOSE_REQUIRED, **(variables or {})})


def raw_compose() -> dict[str, Any]:
    return load_yaml(COMPOSE.read_text())


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


# --- Kubernetes --------------------------------------------------------------------------------------------


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def k8s_documents(path: Path) -> list[dict[str, Any]]:
    return load_yaml_all(path.read_text())


@cache
def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) → manifest, over every file of deploy/k8s/."""
    objects = {}
    for path in k8s_files():
        for doc in k8s_documents(path):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def k8s(kind: str, name: str) -> dict[str, Any]:
    return k8s_objects()[(kind, name)]


def container(pod_owner: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = pod_owner["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if name is None or c["name"] == name)
