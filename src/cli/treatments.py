"""``dynamic_treatment_cli`` / ``cvm treatments``: add custom treatments in one line, inspect, change and use them.

The store commands (add, list, get, update, remove) read the YAML config only to
know the standard ids and the currency; the treatments file comes from
``CVM_CUSTOM_TREATMENTS`` (default ``config/custom_treatments.json``).
``process`` and ``batch`` are the processing pipeline of ``cvm process``
(``cvm.cli.run``), which merges the custom treatments into the config.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import typer

from cvm.cli.common import load_settings, new_app, run_app, setup_logging
from cvm.cli.listing import View, emit
from cvm.cli.options import (
    DEFAULT_SHOW,
    AsOf,
    AutoApprove,
    Batch,
    Budget,
    ConfigFile,
    DataDir,
    DryRun,
    ListOutput,
    LogLevel,
    MaxWorkers,
    OutputFile,
    Quiet,
    RunId,
    Selector,
    Show,
)
from cvm.cli.results import write_results
from cvm.cli.run import decide, result_path, select_customers, start_run
from cvm.tools import treatment_parser
from cvm.tools.llm import LLMClient
from cvm.tools.treatment_store import TreatmentStore, document, slug_id
from cvm.utils.config import IGNORE_ID, CustomTreatmentSpec, CVMConfig, Treatment, load_config
from cvm.utils.errors import UsageError
from cvm.utils.settings import RuntimeSettings

app = new_app(
    no_args_is_help=True,
    help="Custom treatments from one line of text or JSON: help, add, list, get, update, remove, process, batch.",
)

TextOrJson = Annotated[str, typer.Argument(metavar="TEXT_OR_JSON", help="One line of text or a JSON object (see: help).")]
TreatmentId = Annotated[str, typer.Argument(metavar="ID", help="A treatment id, e.g. custom_personalized_video_message.")]
Output = Annotated[Literal["table", "json"], typer.Option("--output", help="table or json.")]
Parser = Annotated[str, typer.Option("--parser", help="auto (the LLM proposes fields when OPENAI_API_KEY is set), rules or llm.")]
PARSERS = ("auto", "rules", "llm")


def help_text() -> str:
    """The accepted text patterns and JSON fields, with examples; the defaults come from the parser itself."""
    defaults = "\n".join(
        f"  {name:<24}{_shown(name, value)}: {why}" for name, (value, why) in treatment_parser.DEFAULTS.items()
    )
    return f"""\
dynamic_treatment_cli (also: cvm treatments) - custom treatments from one line of text or JSON

COMMANDS
  help                                      this text
  add TEXT_OR_JSON [--output json]          add a treatment; prints what was inferred and what was defaulted
  list [--custom-only] [--output json]      every treatment: standard, config and custom
  get ID [--output json]                    one treatment
  update ID TEXT_OR_JSON                    change only the fields the text or JSON states; a new limit,
                                            priority or cost is also written into the description where
                                            it states the old one (a description you give is kept as is)
  remove ID                                 remove a custom treatment (a standard one cannot be removed:
                                            disable it with enabled: false in the config file)
  process CUSTOMER_ID                       decide for one customer with standard and custom treatments
  batch IDS [--batch] [--budget B]          the same for comma-separated customers (U123,U124); from
                                            batch.auto_threshold customers on (or with --batch) the batch path

FREE TEXT: an action, then any of these phrases, in any order
  name      the words after the verb up to the first phrase below, title-cased:
            "Send personalized video message to customer ..." -> Personalized Video Message;
            or quote it as typed: 'Add "Winter Warmer Bundle" by email'
  id        custom_ + the name in snake case (custom_personalized_video_message); _2, _3 ... when taken
  channel   email, e-mail, newsletter -> email      sms, mms, text -> sms
            call, call-back, ring, telephone, voicemail -> call
            push, notification, app, in-app -> push_notifications
            video message -> email (sent as a link in an email)
            letter, post, mail, gift, voucher, coupon, postcard, brochure -> email: CVM has no postal
            consent channel, so these are sent or announced by email and need email consent
            "by / via / through / over / in X" wins over other channel words
  purpose   the consent a contact needs; marketing is the strictest, so when unsure it is marketing:
            marketing whenever the text sells, promotes, offers, upgrades or cross-sells anything
            (sell, promote, offer, deal, discount, voucher, gift, upgrade, partner, premium, plan,
            package, bundle, new product, free, 20% ...), even when it also says "for service updates";
            else the one stated ("for service updates", "for billing", "purpose: marketing");
            else billing for a bill message (bill due, payment, invoice, refund, charges, overdue)
            or service_updates for a service message (outage, maintenance, repair, engineer visit,
            fault, fix, service notice); a bare "network" or "service" is not one
  limit     "limit 10", "max 500", "up to 50 a day", "200 per day", "5k per day", "unlimited"
            (max_per_day, 0 to 10,000,000)
  priority  "priority 2" (1 is highest, up to 99); "top" or "urgent priority" 1, "high priority" 2,
            "medium priority" 3, "low priority" 5
  cost      "costing 2.50", "cost £1.20", "£50 each", "5p per contact", "at £3" (pounds per contact,
            0 to 10,000; inf, nan and 1e308 are refused)
  approval  "requires approval", "needs manager approval", "no approval"
  enabled   "disabled" or "paused" at the end of a clause adds it switched off ("..., disabled")
  The whole line is kept as the description: the rules selector scores a treatment by how well
  the words of its name and description answer the customer's journey (network, bill, roaming,
  retention, loyalty, family, upgrade, data ...). Line breaks become spaces; escape codes, bells
  and other control characters are refused in the line, in names and in ids, and stripped from a
  JSON description.

DEFAULTS for what the text does not say (add prints which were used)
{defaults}

JSON: one object in the prototype's shape (all but display_name optional)
  {{"display_name": "Personalized Video Message",
   "description": "A personal video from the care team",
   "channel": "email", "purpose": "marketing", "enabled": true, "requires_approval": false,
   "value_per_accept": 0,
   "constraints": {{"max_per_day": 10, "cost_per_contact_pounds": 2.5, "priority": 2}},
   "id": "custom_video"}}
  purpose may be given as permission_type; a missing channel or purpose is inferred from the
  name and description like free text; a stated purpose is kept, with a warning when the name or
  description sells something under service_updates or billing. id is optional (generated
  otherwise). Unknown keys, wrong types, Infinity, NaN and out-of-range values (cost 0 to 10,000
  per contact, value_per_accept 0 to 1,000,000) are errors that name the field.

EXAMPLES
  dynamic_treatment_cli add "Send personalized video message to customer with limit 10 and priority 2"
  dynamic_treatment_cli add "Network signal booster by SMS for service updates, limit 50, costing 0.04"
  dynamic_treatment_cli add "Give loyal customers a free gift voucher costing £5, requires approval"
  dynamic_treatment_cli add '{{"display_name": "Roaming Pass", "channel": "sms", "constraints": {{"max_per_day": 200}}}}'
  dynamic_treatment_cli update custom_personalized_video_message "limit 20 and priority 1"
  dynamic_treatment_cli update custom_personalized_video_message '{{"enabled": false}}'
  dynamic_treatment_cli list --custom-only --output json
  dynamic_treatment_cli get custom_personalized_video_message --output json
  dynamic_treatment_cli remove custom_personalized_video_message
  dynamic_treatment_cli process U123
  dynamic_treatment_cli batch U123,U124,U133

LLM: with --parser llm, or auto and OPENAI_API_KEY set, add asks the model (OPENAI_BASE_URL, MODEL_ID)
for the fields the text does not state; the embedded validator keeps a proposal only when it is a
CVM channel or purpose, a number written in the text, or a name made of the text's words.
update never uses the LLM.

FILE: config/custom_treatments.json or CVM_CUSTOM_TREATMENTS; every change is written to a temp
file and renamed over the old one under a file lock, so concurrent adds are all kept."""


@app.command("help")
def show_help() -> None:
    """Show the accepted text patterns and JSON fields, with examples."""
    print(help_text())


@app.command("add")
def add(
    text: TextOrJson, output: Output = "table", parser: Parser = "auto", config: ConfigFile = None, log_level: LogLevel = None,
) -> None:
    """Add a custom treatment from one line of text or a JSON object."""
    settings, cfg, store = _open(config, log_level)
    draft = treatment_parser.parse(text, llm=_parser_llm(parser, settings, cfg))
    spec, sources = treatment_parser.complete(draft)
    treatment = store.add(spec, reserved=[*cfg.treatments, IGNORE_ID], requested_id=draft.requested_id)
    notes = list(draft.notes)
    if draft.requested_id is None and treatment.id != slug_id(treatment.display_name):
        notes.append(f"{slug_id(treatment.display_name)} was taken, so the id is {treatment.id}")
    _report("added", treatment, sources, notes, store, cfg, output, _warnings(treatment))


@app.command("update")
def update(
    treatment_id: TreatmentId, text: TextOrJson, output: Output = "table", config: ConfigFile = None, log_level: LogLevel = None,
) -> None:
    """Change the fields the text or JSON states; everything else stays as it is."""
    _refuse_control_characters_in_id(treatment_id)
    _, cfg, store = _open(config, log_level)
    _refuse_config_treatment(treatment_id, cfg, "changed here; edit it in that file (enabled: false disables it)")
    draft = treatment_parser.parse(text, partial=True)
    if draft.requested_id not in (None, treatment_id):
        raise UsageError(f"an id cannot change ({treatment_id} -> {draft.requested_id}); add a new treatment and remove this one")
    sources: dict[str, str] = {}

    def change(old: Treatment) -> CustomTreatmentSpec:
        spec, fields = treatment_parser.complete(draft, base=document(old))
        sources.update(fields)
        return spec

    _, new = store.update(treatment_id, change)
    _report("updated", new, sources, draft.notes, store, cfg, output, _warnings(new))


@app.command("remove")
def remove(treatment_id: TreatmentId, config: ConfigFile = None, log_level: LogLevel = None) -> None:
    """Remove a custom treatment (a standard treatment can only be disabled, in the config file)."""
    _refuse_control_characters_in_id(treatment_id)
    _, cfg, store = _open(config, log_level)
    _refuse_config_treatment(treatment_id, cfg, "removed; disable it instead with enabled: false in that file")
    removed = store.remove(treatment_id)
    print(f"removed {removed.id} ({removed.display_name}) from {store.path}")


TREATMENT_COLUMNS = ("id", "display_name", "channel", "purpose", "max_per_day", "cost_per_contact", "priority", "enabled",
                     "requires_approval", "source")


@app.command("list")
def list_treatments(
    custom_only: Annotated[bool, typer.Option("--custom-only", "--custom_only", help="Only the custom treatments.")] = False,
    output: ListOutput = "table", show: Show = DEFAULT_SHOW, quiet: Quiet = False, config: ConfigFile = None, log_level: LogLevel = None,
) -> None:
    """List every treatment (standard, config and custom), or only the custom ones."""
    view = View.of(output, show, quiet)
    _, cfg, store = _open(config, log_level)
    treatments = [t for t in _merged(cfg, store).treatments.values() if t.source == "custom" or not custom_only]

    def table(bound: int | None) -> None:
        from cvm.cli.render import print_rows

        columns = ("id", "name", "channel", "purpose", "max/day", f"cost ({cfg.settings.currency})", "priority", "enabled", "approval", "source")
        rows = [
            (t.id, t.display_name, t.channel, t.purpose, _shown("max_per_day", t.max_per_day), f"{t.cost_per_contact:.2f}",
             str(t.priority), _shown("enabled", t.enabled), _shown("requires_approval", t.requires_approval), t.source)
            for t in treatments
        ]
        print_rows(f"Treatments ({len(treatments)}; custom ones from {store.path})", columns, rows, bound)

    emit(
        view, as_json=lambda: [t.model_dump(mode="json") for t in treatments], header=TREATMENT_COLUMNS,
        csv_rows=lambda: ([getattr(t, c) for c in TREATMENT_COLUMNS] for t in treatments), table=table,
    )


@app.command("get")
def get(treatment_id: TreatmentId, output: Output = "table", config: ConfigFile = None, log_level: LogLevel = None) -> None:
    """Show one treatment, standard or custom."""
    _refuse_control_characters_in_id(treatment_id)
    _, cfg, store = _open(config, log_level)
    treatment = _merged(cfg, store).treatment(treatment_id)
    if output == "json":
        print(json.dumps(treatment.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    from cvm.cli.render import plain

    for key, value in treatment.model_dump(mode="json").items():
        if key == "eligibility":
            value = {rule: bound for rule, bound in value.items() if bound not in (None, [])} or "none"
        print(f"{key:<20}{plain(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))}")


@app.command("process")
def process(
    customer_id: Annotated[str, typer.Argument(metavar="CUSTOMER_ID", help="One customer id, e.g. U123.")],
    output_file: OutputFile = None, log_level: LogLevel = None, data_dir: DataDir = None, config: ConfigFile = None,
    selector: Selector = None, run_id: RunId = None, dry_run: DryRun = False, as_of: AsOf = None,
    auto_approve: AutoApprove = False, output: ListOutput = "table", quiet: Quiet = False,
) -> None:
    """Decide the next best treatment for one customer, standard and custom treatments together."""
    if "," in customer_id:
        raise UsageError(f"process takes one customer id, not {customer_id!r}; use batch {customer_id}")
    _decide(customer_id, output_file, View.of(output, "all", quiet), log_level=log_level, data_dir=data_dir, config=config, selector=selector,
            run_id=run_id, dry_run=dry_run, as_of=as_of, auto_approve=auto_approve)


@app.command("batch")
def batch(
    customer_ids: Annotated[str, typer.Argument(metavar="IDS", help="Comma-separated customer ids, e.g. U123,U124.")],
    output_file: OutputFile = None, log_level: LogLevel = None, data_dir: DataDir = None, config: ConfigFile = None,
    selector: Selector = None, max_workers: MaxWorkers = 1, run_id: RunId = None, dry_run: DryRun = False, as_of: AsOf = None,
    auto_approve: AutoApprove = False, batch_path: Batch = False, budget: Budget = None,
    output: ListOutput = "table", show: Show = DEFAULT_SHOW, quiet: Quiet = False,
) -> None:
    """Decide for several customers, standard and custom treatments together (the batch path like cvm process)."""
    if not customer_ids.strip(" ,"):
        raise UsageError("IDS is empty; give comma-separated customer ids, e.g. U123,U124")
    from cvm.engine.deciding import check_budget  # not at import: it loads numpy

    check_budget(batch_path, budget)
    _decide(customer_ids, output_file, View.of(output, show, quiet), batch=batch_path, budget=budget, log_level=log_level, data_dir=data_dir, config=config,
            selector=selector, max_workers=max_workers, run_id=run_id, dry_run=dry_run, as_of=as_of, auto_approve=auto_approve)


def _decide(customer_ids: str, output_file: str | None, view: View, *, batch: bool = False, budget: float | None = None, **flags: Any) -> NoReturn:
    """The ``cvm process`` pipeline: its runtime merges the custom treatments file into the config; from
    ``batch.auto_threshold`` customers on (or with ``--batch``) the batch path decides."""
    run = start_run(**flags)
    ids = select_customers(run, customer_ids, False)
    path = result_path(run, output_file)
    raise typer.Exit(write_results(run, decide(run, ids, batch=batch, budget=budget), path, view))


def _open(config: str | None, log_level: str | None) -> tuple[RuntimeSettings, CVMConfig, TreatmentStore]:
    """Settings, logging, the YAML config (standard ids, currency) and the custom treatments store."""
    settings = load_settings()
    cfg = load_config(Path(config) if config else settings.config_path)
    setup_logging(settings, log_level, cfg)
    from cvm.runtime import treatment_store

    return settings, cfg, treatment_store(settings)


def _merged(cfg: CVMConfig, store: TreatmentStore) -> CVMConfig:
    return cfg.with_treatments(store.load())


def _parser_llm(parser: str, settings: RuntimeSettings, cfg: CVMConfig) -> LLMClient | None:
    """``auto`` asks the LLM only when ``OPENAI_API_KEY`` is set; ``llm`` needs a key or a base URL."""
    if parser not in PARSERS:
        raise UsageError(f"--parser must be one of {', '.join(PARSERS)}, not {parser!r}")
    if parser == "rules" or (parser == "auto" and settings.openai_api_key is None):
        return None
    if settings.openai_api_key is None and settings.openai_base_url is None:
        raise UsageError("--parser llm needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local endpoint); or use --parser rules")
    from cvm.runtime import llm_client

    return llm_client(cfg, settings)


def _refuse_config_treatment(treatment_id: str, cfg: CVMConfig, consequence: str) -> None:
    """Standard and config treatments live in the YAML file, which CVM never rewrites."""
    if treatment_id == IGNORE_ID:
        raise UsageError("ignore (no action) is built in and cannot be changed or removed")
    if treatment_id in cfg.treatments:
        kind = cfg.treatments[treatment_id].source
        raise UsageError(f"{treatment_id} is a {kind} treatment from {cfg.source} and cannot be {consequence}")


def _refuse_control_characters_in_id(treatment_id: str) -> None:
    """An ID with an escape code or a line break is no id, and must not reach the terminal in an error message."""
    treatment_parser.refuse_control_characters(treatment_id, "ID")


def _warnings(treatment: Treatment) -> list[str]:
    """What the user must see about a stored treatment: a stated purpose its own words contradict."""
    warning = treatment_parser.consent_warning(treatment)
    return [warning] if warning else []


def _shown(name: str, value: Any) -> str:
    if name == "max_per_day" and value is None:
        return "unlimited"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name == "cost_per_contact_pounds":
        return f"{value:.2f}"
    return str(value)


def _report(
    action: str, treatment: Treatment, sources: dict[str, str], notes: list[str] | tuple[str, ...],
    store: TreatmentStore, cfg: CVMConfig, output: str, warnings: list[str],
) -> None:
    """What was stored, each field with where it came from (inferred, stated, default or unchanged).

    Warnings go to stderr too, so they are seen even when the output is piped or is JSON.
    """
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    stored = document(treatment)
    values = {**stored, **stored["constraints"]}
    if output == "json":
        print(json.dumps({
            "action": action, "id": treatment.id, "file": str(store.path), "treatment": treatment.model_dump(mode="json"),
            "sources": sources, "notes": list(notes), "warnings": warnings,
        }, indent=2, ensure_ascii=False))
        return
    print(f"{action} {treatment.id} in {store.path}")
    for name in treatment_parser.FIELDS:
        shown = _shown(name, values[name]) + (f" {cfg.settings.currency}" if name == "cost_per_contact_pounds" else "")
        print(f"  {name:<24}{shown:<32}{sources[name]}")
    print(f"  {'description':<24}{treatment.description}")
    for note in notes:
        print(f"note: {note}")
    if any(source.startswith("default") for source in sources.values()):
        print(f"change any field with: update {treatment.id} \"limit 50 and priority 2\" (see: help)")


def run() -> NoReturn:
    """Console-script entry point of ``dynamic_treatment_cli``."""
    run_app(app)
