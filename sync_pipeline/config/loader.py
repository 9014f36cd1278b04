"""YAML files -> a validated `Config`, or ConfigError listing every problem of every file.

Layout: `<config_dir>/connectors.yaml` (name -> connector) and `<config_dir>/flows/*.yaml`
(one flow per file; its name defaults to the file stem). Problems print as
`config/flows/x.yaml: source.stream: Missing data for required field.`, so `syncctl check`
can show them as they are. A byte that is not UTF-8, a character YAML refuses, a syntax
error or a duplicate key names its line and column. Each connector's options and each flow's
streams are checked against what its connector class declares (connectors/registry.py).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from marshmallow import ValidationError

from sync_pipeline.config.alerts import (
    ALERTS_FILE,
    FLOW_KINDS,
    GROUP_VENDORS,
    NO_ALERTS,
    AlertKind,
    AlertsConfig,
    AlertsSchema,
)
from sync_pipeline.config.connector import (
    ConnectorConfig,
    ConnectorSchema,
    CredentialRefSchema,
    RateLimit,
    Vendor,
    WebhookConfig,
    resolve_credentials,
    resolve_options,
)
from sync_pipeline.config.declarative import RestSchema, RestSpec
from sync_pipeline.config.flow import Flow, FlowSchema, ReconcileConfig
from sync_pipeline.config.options import (
    ConnectorOptions,
    OptionsSchema,
    check_written,
    is_reference,
)
from sync_pipeline.connectors.base import StreamCapabilities
from sync_pipeline.connectors.registry import (
    capabilities,
    declared_streams,
    option_schema,
    streams_of,
)
from sync_pipeline.errors import ConfigError, ConfigErrors
from sync_pipeline.stages.transform import UserField

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

CONNECTORS_FILE = "connectors.yaml"
FLOWS_DIR = "flows"
TOP = "(top)"  # the key path of a problem with the file as a whole
NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Config:
    connectors: Mapping[str, ConnectorConfig]
    flows: Mapping[str, Flow]
    # sha256 of the files as read (names and bytes; secrets and the environment are not in
    # it): a service records the digest it started with, so check can tell it is out of date.
    digest: str = ""
    alerts: AlertsConfig = NO_ALERTS  # config/alerts.yaml; none when the file is absent

    def enabled_flows(self) -> tuple[Flow, ...]:
        return tuple(flow for flow in self.flows.values() if flow.enabled)

    def pullable(self, flow: Flow) -> bool:
        """Whether a pull can read the flow's source; a flow whose source stream only webhook
        events sync (chat messages) has nothing to pull."""
        streams = streams_of(self.connectors[flow.source.connector])
        can = streams.get(flow.source.stream)
        return can is not None and can.read

    def reads_back(self, flow: Flow) -> bool:
        """Whether the flow's target can be read back (`syncctl reconcile`)."""
        streams = capabilities(self.connectors[flow.target.connector].vendor)
        can = streams.get(flow.target.stream)
        return can is not None and can.reads_back

    def reconcile_of(self, flow: Flow) -> ReconcileConfig | None:
        """How the flow is reconciled: as its file says, else nightly where its target can
        be read back; None where it cannot (the loader refused a `reconcile:` there)."""
        if not self.reads_back(flow):
            return None
        return flow.reconcile or ReconcileConfig()


def load_config(
    config_dir: Path | str,
    env: Mapping[str, str] | None = None,
    *,
    webhook_secrets: bool = False,
    environment: bool = True,
) -> Config:
    """Load and check every file; `env` (default os.environ) supplies env-var secrets.

    `webhook_secrets`: the `webhook:` sections' secrets must be set too, and what is missing
    is reported with every other problem. Only the webhook service needs them (workers load
    without), and a variable may be both a credential and a callback secret (Feishu's approval
    center reuses the webhook's Verification Token and Encrypt Key), so checking them in a
    second round would hide the callback secret behind the credential.

    `environment=False`: the files alone, nothing read from the environment or from secret
    files, for what needs only the flows (Beat, `syncctl status`, `run`): the connectors are
    checked as written and come back unresolved (`ConnectorConfig.resolved` False), so a
    command that reads only our own state never needs a vendor's secret.
    """
    config_dir = Path(config_dir)
    env = os.environ if env is None else env
    problems: dict[str, list[tuple[str, str]]] = {}
    digest = hashlib.sha256()
    connectors_path = config_dir / CONNECTORS_FILE
    raw_connectors = _read(connectors_path, problems, digest) or {}
    # The declarative connectors' descriptions first: their streams are what flows are
    # checked against, and they need no environment.
    specs = _declarative(connectors_path, raw_connectors, problems, digest)
    declared = {name: declared_streams(spec) for name, spec in specs.items() if spec is not None}
    connectors = _connectors(
        connectors_path,
        raw_connectors,
        env if environment else None,
        problems,
        webhook_secrets,
        specs,
    )
    # Names and vendors as written, so flows are checked even while connectors.yaml has errors.
    known = tuple(str(v) for v in Vendor)
    vendors = {
        str(name): body["vendor"] if isinstance(body, dict) and body.get("vendor") in known else ""
        for name, body in raw_connectors.items()
    }
    # The names users are known by: the vendor's, or a rest connector's system (its name).
    systems = {
        name: (spec.system if spec is not None and spec.system else name)
        if vendor == Vendor.REST.value
        else vendor
        for name, vendor in vendors.items()
        for spec in [specs.get(name)]
    }
    flows: dict[str, Flow] = {}
    defined_in: dict[str, Path] = {}
    flows_dir = config_dir / FLOWS_DIR
    for path in sorted([*flows_dir.glob("*.yaml"), *flows_dir.glob("*.yml")]):
        raw = _read(path, problems, digest)
        flow = None if raw is None else _flow(path, raw, problems)
        if flow is None:
            continue
        file_problems = list(_cross_checks(flow, vendors, declared, connectors_path, systems))
        file_problems += _option_checks(flow, vendors, declared, raw_connectors, connectors_path)
        if flow.name in defined_in:
            file_problems.append(
                ("name", f"expected a unique name; {defined_in[flow.name]} has it")
            )
        if file_problems:
            problems.setdefault(str(path), []).extend(file_problems)
        else:
            flows[flow.name], defined_in[flow.name] = flow, path
    alerts = _alerts(
        config_dir / ALERTS_FILE, vendors, flows, env if environment else None, problems, digest
    )
    if len(problems) == 1:
        [(file, file_problems)] = problems.items()
        raise ConfigError(file, file_problems)
    if problems:
        raise ConfigErrors(list(problems.items()))
    return Config(connectors=connectors, flows=flows, digest=digest.hexdigest(), alerts=alerts)


def _alerts(
    path: Path,
    vendors: Mapping[str, str],
    flows: Mapping[str, Flow],
    env: Mapping[str, str] | None,
    problems: dict[str, list[tuple[str, str]]],
    digest: Hash,
) -> AlertsConfig:
    """The alert rules, when the file exists, checked against the connectors and flows:
    a group destination on a connector that can post to groups, rules naming flows and
    vendors that exist, and (with `env`) each webhook's secret variable set."""
    if not path.exists():
        return NO_ALERTS
    raw = _read(path, problems, digest)
    if raw is None:
        return NO_ALERTS
    try:
        alerts: AlertsConfig = AlertsSchema().load(raw)
    except ValidationError as exc:
        problems.setdefault(str(path), []).extend(flatten(exc.messages))
        return NO_ALERTS
    found: list[tuple[str, str]] = []
    for name, dest in alerts.destinations.items():
        if dest.group is not None:
            vendor = vendors.get(dest.group.connector)
            if vendor not in GROUP_VENDORS:
                able = ", ".join(c for c, v in vendors.items() if v in GROUP_VENDORS) or "none"
                found.append(
                    (
                        f"destinations.{name}.group.connector",
                        f"expected a connector that posts to groups ({able})",
                    )
                )
        if dest.webhook is not None and env is not None and not env.get(dest.webhook.secret_env):
            found.append(
                (
                    f"destinations.{name}.webhook.secret_env",
                    f"expected the variable {dest.webhook.secret_env} to be set",
                )
            )
    known_vendors = set(vendors.values())
    for rule in alerts.all_rules:
        if rule.kind in FLOW_KINDS:
            for flow in rule.flows:
                if flow not in flows:
                    known = ", ".join(sorted(flows)) or "none"
                    found.append((f"rules.{rule.name}.flows", f"expected flow names ({known})"))
        if rule.kind in (AlertKind.VENDOR_DOWN, AlertKind.QUOTA):
            for vendor in rule.vendors:
                if vendor not in known_vendors:
                    found.append(
                        (
                            f"rules.{rule.name}.vendors",
                            f"expected vendors of connectors ({', '.join(sorted(known_vendors))})",
                        )
                    )
    if found:
        problems.setdefault(str(path), []).extend(found)
        return NO_ALERTS
    return alerts


def _connectors(
    path: Path,
    raw: Mapping[str, Any],
    env: Mapping[str, str] | None,
    problems: dict[str, list[tuple[str, str]]],
    webhook_secrets: bool,
    specs: Mapping[str, RestSpec | None],
) -> dict[str, ConnectorConfig]:
    """Each connector checked; with `env` None, checked as written and left unresolved."""
    found: list[tuple[str, str]] = []
    connectors: dict[str, ConnectorConfig] = {}
    for name, written in raw.items():
        if not NAME.fullmatch(str(name)):
            found.append((str(name), "expected a lower_snake_case connector name"))
            continue
        if not isinstance(written, dict):
            found.append((name, "expected a mapping with vendor, base_url and credentials"))
            continue
        if env is None:
            body = _unexpanded_base_url(written)
        else:
            body, unset = _expand_base_url(written, env)
            if unset:
                found.append((f"{name}.base_url", f"expected the variable {unset} to be set"))
                continue
        try:
            data: dict[str, Any] | None = ConnectorSchema().load(body)
        except ValidationError as exc:
            data = None
            found += [(f"{name}.{key}", msg) for key, msg in flatten(exc.messages)]
        schema, unusable = _written_options(name, body)
        found += unusable
        if data is None or schema is None:
            continue
        spec = specs.get(name)
        if data["vendor"] is Vendor.REST:
            if spec is None:
                continue  # its own problems are reported (in the file that describes it)
            found += _rest_webhook_problems(name, spec, data["webhook"])
            unknown = sorted(spec.credentials() - set(data["credentials"]))
            if unknown:
                found.append(
                    (
                        f"{name}.declarative",
                        f"expected credentials {', '.join(unknown)} under credentials:",
                    )
                )
                continue
        data = {**data, "declarative": spec}
        limits = {
            api: tuple(RateLimit(count, per_s) for count, per_s in windows)
            for api, windows in data["rate_limits"].items()
        }
        data = {**data, "rate_limits": limits}
        if env is None:
            connectors[name] = ConnectorConfig(
                name=name, **{**data, "credentials": {}, "options": None}, resolved=False
            )
            continue
        secrets, missing = resolve_credentials(data["credentials"], env, path.parent)
        found += [(f"{name}.credentials.{key}", msg) for key, msg in missing]
        options, missing = _options(schema, data["options"], env, path.parent)
        found += [(f"{name}.options.{key}", msg) for key, msg in missing]
        if webhook_secrets and data["webhook"] is not None:
            _, missing = resolve_credentials(data["webhook"].secrets, env, path.parent)
            found += [(f"{name}.webhook.{key}", msg) for key, msg in missing]
        if options is not None:
            connectors[name] = ConnectorConfig(
                name=name, **{**data, "credentials": secrets, "options": options}
            )
    if found:
        problems.setdefault(str(path), []).extend(found)
    return connectors


def _rest_webhook_problems(
    name: str, spec: RestSpec, webhook: WebhookConfig | None
) -> list[tuple[str, str]]:
    """A rest connector's `webhook:` section holds the one secret its description's webhook
    names; without a webhook in the description, it has none."""
    if webhook is None:
        return []
    if spec.webhook is None:
        return [(f"{name}.webhook", "expected webhook: in the connector's description")]
    given = set(webhook.secrets)
    if given != {spec.webhook.secret}:
        return [
            (f"{name}.webhook", f"expected exactly {spec.webhook.secret}, the secret it signs with")
        ]
    return []


def _declarative(
    path: Path,
    raw: Mapping[str, Any],
    problems: dict[str, list[tuple[str, str]]],
    digest: Hash,
) -> dict[str, RestSpec | None]:
    """Each rest connector's description, inline or from `{file: path}` (relative to
    connectors.yaml); None where it has problems, which are recorded against the file that
    holds them (keys under `NAME.declarative.` inline, from the file's top otherwise)."""
    specs: dict[str, RestSpec | None] = {}
    for name, body in raw.items():
        if not isinstance(body, Mapping) or body.get("vendor") != Vendor.REST.value:
            continue
        written = body.get("declarative")
        if not isinstance(written, Mapping):
            specs[str(name)] = None  # ConnectorSchema says what is expected
            continue
        where, prefix = path, f"{name}.declarative."
        if set(written) == {"file"} and isinstance(written["file"], str):
            where, prefix = path.parent / written["file"], ""
            written = _read(where, problems, digest)
            if written is None:
                specs[str(name)] = None
                continue
        try:
            specs[str(name)] = RestSchema().load(written)
        except ValidationError as exc:
            specs[str(name)] = None
            found = [(f"{prefix}{key}".rstrip("."), msg) for key, msg in flatten(exc.messages)]
            problems.setdefault(str(where), []).extend(found)
    return specs


def _written_options(
    name: str, body: Mapping[str, Any]
) -> tuple[type[OptionsSchema] | None, list[tuple[str, str]]]:
    """The options the vendor's connector declares (connectors/registry.py), and the problems
    of the options as written, a `{env: NAME}` value's NAME included; (None, []) when the
    vendor or the options' shape is wrong, which ConnectorSchema reports."""
    vendor, written = body.get("vendor"), body.get("options", {})
    if vendor not in tuple(str(v) for v in Vendor) or not isinstance(written, Mapping):
        return None, []
    try:
        schema = option_schema(Vendor(vendor), name)
    except ConfigError as exc:  # this build lacks the vendor's connector
        return None, exc.problems
    problems: list[tuple[str, str]] = []
    for key, value in written.items():
        if is_reference(value):
            try:
                CredentialRefSchema().load(value)
            except ValidationError as exc:
                problems += [(f"{name}.options.{key}.{k}", m) for k, m in flatten(exc.messages)]
    try:
        check_written(schema, written)
    except ValidationError as exc:
        problems += [(f"{name}.options.{key}", msg) for key, msg in flatten(exc.messages)]
    return (None if problems else schema), problems


def _options(
    schema: type[OptionsSchema], written: Mapping[str, Any], env: Mapping[str, str], base: Path
) -> tuple[ConnectorOptions | None, list[tuple[str, str]]]:
    """The options with their references read, loaded by the vendor's schema, which checks
    what was read as it checked the values written; problems are keyed under `options`."""
    values, missing = resolve_options(written, env, base)
    if missing:
        return None, missing
    try:
        options: ConnectorOptions = schema().load(values)
    except ValidationError as exc:
        return None, list(flatten(exc.messages))
    return options, []


ENV_REFERENCE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def _expand_base_url(body: dict[str, Any], env: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """`${NAME:-default}` in base_url, as in docker-compose, so one file serves every
    environment (the sandbox moves with --port-base). Returns (body, name of an unset
    variable without default, or "")."""
    url = body.get("base_url")
    if not isinstance(url, str) or "${" not in url:
        return body, ""
    unset = ""

    def value(match: re.Match[str]) -> str:
        nonlocal unset
        name, default = match.group("name"), match.group("default")
        if name in env and env[name] != "":
            return env[name]
        if default is None:
            unset = unset or name
            return ""
        return default

    return {**body, "base_url": ENV_REFERENCE.sub(value, url)}, unset


UNRESOLVED_URL = "http://unresolved.invalid"  # a base_url whose variables were not read


def _unexpanded_base_url(body: dict[str, Any]) -> dict[str, Any]:
    """A base_url naming variables cannot be checked without them: it stands in as
    UNRESOLVED_URL; a literal one is checked as usual."""
    url = body.get("base_url")
    if isinstance(url, str) and "${" in url:
        return {**body, "base_url": UNRESOLVED_URL}
    return body


def _flow(
    path: Path, raw: Mapping[str, Any], problems: dict[str, list[tuple[str, str]]]
) -> Flow | None:
    try:
        flow: Flow = FlowSchema().load({"name": path.stem, **raw})
    except ValidationError as exc:
        problems.setdefault(str(path), []).extend(flatten(exc.messages))
        return None
    return flow


Declared = Mapping[str, Mapping[str, StreamCapabilities]]  # rest connector -> its streams


def _cross_checks(
    flow: Flow,
    vendors: Mapping[str, str],
    declared: Declared,
    connectors_path: Path,
    systems: Mapping[str, str],
) -> Iterator[tuple[str, str]]:
    """What one file cannot know alone: connector names, what their streams can do, and
    users mapped between the flow's own two systems."""
    for side, endpoint in (("source", flow.source), ("target", flow.target)):
        if endpoint.connector not in vendors:
            known = ", ".join(sorted(vendors)) or "none"
            yield (
                f"{side}.connector",
                f"expected a connector defined in {connectors_path} ({known})",
            )
    yield from _stream_checks(flow, vendors, declared)
    source, target = systems.get(flow.source.connector), systems.get(flow.target.connector)
    for name, spec in flow.mapping.fields.items():
        if not isinstance(spec, UserField):
            continue
        key = f"mapping.fields.{name}.user"
        if source and spec.from_system != source:
            yield f"{key}.from_system", f"expected {source}, the source connector's system"
        if target and spec.to_system != target:
            yield f"{key}.to_system", f"expected {target}, the target connector's system"


def _stream_checks(
    flow: Flow, vendors: Mapping[str, str], declared: Declared
) -> Iterator[tuple[str, str]]:
    """Each stream asked only for what its connector declares (connectors/registry.py):
    a stream a connector cannot serve in its role would fail every run, not once."""
    source = _streams(flow.source.connector, vendors, declared)
    if isinstance(source, str):
        yield "source.connector", source
    elif source is not None:
        yield from _source_checks(flow, source, vendors[flow.source.connector])
    target = _streams(flow.target.connector, vendors, declared)
    if isinstance(target, str):
        yield "target.connector", target
    elif target is not None:
        vendor, stream = vendors[flow.target.connector], flow.target.stream
        can = target.get(stream)
        writable = _names(target, lambda c: c.write)
        if can is None:
            yield "target.stream", f"expected a stream of the {vendor} connector: {writable}"
        elif not can.write:
            yield (
                "target.stream",
                (
                    f"expected a stream the {vendor} connector can write ({writable}); "
                    f"{stream} can only be {can.roles()}"
                ),
            )
        if flow.reconcile is not None and (can is None or not can.reads_back):
            readable = _names(target, lambda c: c.reads_back)
            why = f": {can.no_read_back}" if can is not None and can.no_read_back else ""
            yield (
                "reconcile",
                (
                    f"the {vendor} connector cannot read back stream {stream}{why}, so it"
                    f" cannot be reconciled (streams it reads back: {readable}); remove the key"
                ),
            )


def _option_checks(
    flow: Flow,
    vendors: Mapping[str, str],
    declared: Declared,
    raw: Mapping[str, Any],
    connectors_path: Path,
) -> list[tuple[str, str]]:
    """A stream that needs an option of its connector (StreamCapabilities.option) only on a
    connector whose options, as written, have it: without, every run would fail."""
    problems = []
    for side, endpoint in (("source", flow.source), ("target", flow.target)):
        streams = _streams(endpoint.connector, vendors, declared)
        can = streams.get(endpoint.stream) if isinstance(streams, Mapping) else None
        if can is None or can.option is None:
            continue
        body = raw.get(endpoint.connector)
        options = body.get("options") if isinstance(body, Mapping) else None
        if not isinstance(options, Mapping) or can.option not in options:
            problems.append(
                (
                    f"{side}.stream",
                    f"expected option {can.option} of connector {endpoint.connector} in "
                    f"{connectors_path} for stream {endpoint.stream}",
                )
            )
    return problems


def _source_checks(
    flow: Flow, streams: Mapping[str, StreamCapabilities], vendor: str
) -> Iterator[tuple[str, str]]:
    stream = flow.source.stream
    can = streams.get(stream)
    if can is None:
        known = _names(streams, lambda c: c.read or bool(c.events))
        yield "source.stream", f"expected a stream of the {vendor} connector: {known}"
        return
    if (flow.trigger.interval_s or flow.trigger.cron) and not can.read:
        readable = _names(streams, lambda c: c.read)
        yield (
            "source.stream",
            (
                f"expected a stream the {vendor} connector can read on a schedule ({readable}); "
                f"{stream} can only be {can.roles()}"
            ),
        )
    if flow.trigger.webhook and not can.events:
        evented = _names(streams, lambda c: bool(c.events))
        yield (
            "trigger.webhook",
            (
                f"expected a source stream whose {vendor} webhook events start a sync ({evented}); "
                f"{stream} can only be {can.roles()}"
            ),
        )


def _streams(
    connector: str, vendors: Mapping[str, str], declared: Declared
) -> Mapping[str, StreamCapabilities] | str | None:
    """The connector's streams (its vendor's, or a rest connector's own); a problem when
    this build lacks the vendor; None for a connector whose file already reports it."""
    vendor = vendors.get(connector, "")
    if vendor == Vendor.REST.value:
        return declared.get(connector)
    if not vendor:
        return None
    try:
        return capabilities(Vendor(vendor))
    except ConfigError as exc:
        return exc.problems[0][1]


def _names(
    streams: Mapping[str, StreamCapabilities], able: Callable[[StreamCapabilities], bool]
) -> str:
    return ", ".join(sorted(name for name, can in streams.items() if able(can))) or "none"


def _read(
    path: Path, problems: dict[str, list[tuple[str, str]]], digest: Hash
) -> dict[str, Any] | None:
    """The file's top-level mapping, or None once its problem is recorded; its name and
    bytes go into `digest`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.setdefault(str(path), []).append(
            (TOP, f"expected a readable file ({exc.strerror})")
        )
        return None
    top = (CONNECTORS_FILE, ALERTS_FILE)
    label = path.name if path.name in top else f"{FLOWS_DIR}/{path.name}"
    digest.update(f"{label}\0{len(raw)}\0".encode() + raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        decoded = raw[: exc.start].decode("utf-8")
        where = _position(decoded, len(decoded))
        problem = f"expected UTF-8 text; byte 0x{raw[exc.start]:02x} is not (save it as UTF-8)"
        problems.setdefault(str(path), []).append((where, problem))
        return None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        problems.setdefault(str(path), []).append(_yaml_problem(exc, text))
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.setdefault(str(path), []).append((TOP, "expected a mapping of keys to values"))
        return None
    return data


def _position(text: str, offset: int) -> str:
    """`line L, column C` (both from 1) of the character at `offset` in `text`; `text` may
    end there (all that could be decoded before a bad byte)."""
    before = text[:offset]
    return f"line {before.count(chr(10)) + 1}, column {len(before) - before.rfind(chr(10))}"


def _yaml_problem(exc: yaml.YAMLError, text: str) -> tuple[str, str]:
    """(where, what) of a YAML error: a syntax error's mark, or the reader's position of a
    character YAML refuses (a control character, say), which carries no mark."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = TOP if mark is None else f"line {mark.line + 1}, column {mark.column + 1}"
        return where, f"expected valid YAML: {exc.problem or exc.context}"
    if isinstance(exc, yaml.reader.ReaderError):
        what = f"unacceptable character #x{exc.character:04x} ({exc.reason})"
        return _position(text, exc.position), f"expected valid YAML: {what}"
    return TOP, f"expected valid YAML ({type(exc).__name__})"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML keeps the last one silently, so a pasted
    second `target:` would quietly win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                continue  # the base class refuses it with its own error
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def flatten(messages: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """marshmallow's nested messages -> (dotted key path, message), in file order."""
    if isinstance(messages, dict):
        for key, value in messages.items():
            path = prefix if key == "_schema" else f"{prefix}.{key}" if prefix else str(key)
            yield from flatten(value, path)
    elif isinstance(messages, list):
        for message in messages:
            yield from flatten(message, prefix)
    else:
        yield prefix or TOP, str(messages)
