"""Whatever an OA approval holds, it syncs or becomes exactly one dead letter, and the flow goes
on (issue 9): the property, over records Hypothesis makes.

Each example files approvals in the OA emulator with arbitrary Unicode in the fields the
approvals flows read (title; form values, nested within limits; the request id itself; the
people's names in the OA's directory): NUL, lone surrogates (JSON carries them as \\ud800
escapes, and so does the emulator), right-to-left marks, a megabyte now and then, and the
markup characters of every vendor. Then every approvals flow (WeCom, DingTalk, Feishu, Agora
Chat) pulls, through the stages, the state writes and its target connector against the
sandbox, in this process as the tasks run them. For each flow and each approval: its card is
in the target's ledger exactly once, or it is exactly one dead letter with a reason; the run
succeeds, and the cursor moves past it.

`sent_for` gives a filed approval's ledger entries, for tests that assert more about what was
sent (that content never changes a card's structure, say).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sync_pipeline.devtools.sandbox.client import SandboxClient
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import Record
from sync_pipeline.state import cursors, deadletters, pages, runs
from sync_pipeline.untrusted import bounded_id, clean_text
from tests.conftest import next_second
from tests.events.approval_scene import entries, oa_id
from tests.hostile import MARKUP, text
from tests.structure import STRUCTURES, without_id

FLOWS = {  # every shipped approvals flow -> the platform its cards go to
    "approvals_to_wecom": "wecom",
    "approvals_to_dingtalk": "dingtalk",
    "approvals_to_feishu": "feishu",
    "approvals_to_agora": "agora",
}
PEOPLE = ["E00010", "E00011", "E00012", "E00013"]  # people with an account everywhere
NOBODY = "1"  # E9's admin: no IM account, so a card to them is a dead letter
MEGABYTE = 1_000_000

numbers = st.integers() | st.floats(width=16, allow_nan=False, allow_infinity=False)
json_values = st.recursive(  # NaN is JSON's to refuse; tests/integration/test_state_content.py
    st.none() | st.booleans() | numbers | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=10,
)
# The OA keeps its objects under their id and E9 trims a requestId (an id with blanks around
# it names another request): ids keep a letter at each end, and surrogates, which no store
# keys on, out. A blank id, a NUL and an id too long to key on are among them.
id_characters = st.one_of(
    st.characters(exclude_categories=("Cs",)), st.sampled_from(["\x00", "\u200f", *MARKUP])
)
request_ids = st.one_of(
    st.none(),  # the id the OA gives
    st.text(id_characters, min_size=1, max_size=12).map(lambda t: f"R{t}Z"),
    st.sampled_from(["\u2003", "R" + "9" * 3000]),
)


@dataclass(frozen=True)
class Spec:
    """One approval to file: what Hypothesis chose for it."""

    title: str
    form: Any
    request_id: str | None
    applicant: str
    approver: str


specs = st.builds(
    Spec,
    title=text,
    form=json_values,
    request_id=request_ids,
    applicant=st.sampled_from(PEOPLE),
    approver=st.sampled_from([*PEOPLE, NOBODY]),
)


def plain_twin(spec: Spec) -> Spec:
    """The same approval, between the same people, with nothing hostile in it."""
    return Spec("Leave request", {"days": "3"}, None, spec.applicant, spec.approver)


@dataclass(frozen=True)
class Filed:
    """An approval as it was put in the OA: the tag that starts its title (how its messages
    are found in a ledger), its id as the OA has it and as the pipeline keeps it."""

    tag: str
    request_id: str
    source_id: str


def file(sandbox: SandboxClient, store: SandboxStore, spec: Spec) -> Filed:
    """Put the approval in the OA: through its control API, then, for what that API cannot
    set (nested form values, an id of our choosing), straight into the emulator's store."""
    tag = f"T{uuid.uuid4().hex[:12]}"
    made = sandbox.create_approval(
        applicant=spec.applicant, approvers=[spec.approver], title=f"{tag} {spec.title}"
    )
    request_id = str(made["requestId"])
    body = store.get("oa", "approval", request_id)
    assert body is not None
    body["form"] = dict.fromkeys(body["form"], spec.form)
    # The emulator keeps each object's update time beside it and lists by it: the time the
    # OA says, so the list's order is E9's (lastOperateTime, requestId), which paging trusts.
    at = {"created_ms": body["createTime"], "updated_ms": body["lastOperateTime"]}
    if spec.request_id is None:
        store.put("oa", "approval", request_id, body, **at)
        return Filed(tag, request_id, request_id)
    # An id of this filing's own, the tag after its first letter: Hypothesis files an example
    # again when it replays it, and an approval the flows have synced is, rightly, not sent
    # again. (The blank id stays blank.)
    chosen = spec.request_id.replace("R", f"R{tag}", 1)
    # The OA's own record becomes someone else's business: this one carries the tag.
    store.put("oa", "approval", request_id, {**body, "requestName": f"untagged {request_id}"}, **at)
    store.put("oa", "approval", chosen, {**body, "requestId": chosen}, **at)
    return Filed(tag, chosen, clean_text(chosen))


def sent_for(sandbox: SandboxClient, platform: str, filed: Filed) -> list[Mapping[str, Any]]:
    """Every write the platform accepted about a filed approval."""
    return list(entries(sandbox, platform, filed.tag))


def structure(platform: str, entry: Mapping[str, Any], filed: Filed, record: Record) -> Any:
    """What a ledger entry about an approval sent, as tests/structure.py reads it, its id
    taken out."""
    found = STRUCTURES[platform](entry["body"], record.payload.get("url"))
    return without_id(found, filed.request_id, filed.source_id)


def letters_for(rt: Runtime, flow: str, filed: Filed) -> list[deadletters.DeadLetter]:
    with rt.engine.connect() as conn:
        letters = deadletters.open_letters(conn, flow, limit=10_000)
    return [d for d in letters if d.source_id == bounded_id(filed.source_id)]


def pulled(rt: Runtime, run_id: int, filed: Filed) -> Record:
    """The approval as the run read it."""
    with rt.engine.connect() as conn:
        for page_id in pages.page_ids(conn, run_id):
            for record in pages.get(conn, page_id).records:
                if record.source_id == filed.source_id:
                    return record
    raise AssertionError(f"run {run_id} did not read {filed}")


def pull(rt: Runtime, flow: str) -> runs.Run:
    """A whole run in this process (steps.run_inline); one that raises is failed as the
    task fails it, so that the flow's lock is free for the next example."""
    run_id = steps.start_run(rt, flow, "test")
    assert run_id is not None
    try:
        page_ids: list[int] = []
        steps.pull(rt, run_id, page_ids.append)
        for page_id in page_ids:
            steps.plan(rt, page_id)
            steps.write(rt, page_id)
            steps.commit(rt, run_id)
    except Exception as exc:
        steps.fail_run(rt, run_id, exc)
        raise
    with rt.engine.connect() as conn:
        run = runs.get(conn, run_id)
    assert run is not None
    return run


def rename_people(store: SandboxStore, name: str) -> None:
    """The people's names in the OA's directory (the pipeline's directory is refreshed from
    it when it is stale, and at the first pull of a test)."""
    for employee in PEOPLE:
        user = store.get("oa", "user", oa_id(employee))
        assert user is not None
        store.put("oa", "user", oa_id(employee), {**user, "lastname": name})


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(specs, min_size=1, max_size=3), name=text)
@example(  # a megabyte of what PostgreSQL refuses, markup and right-to-left, once every run
    batch=[
        Spec(f"[*]\x00\ud800\u202e{'L' * MEGABYTE}", {"a": [["\x00"]]}, None, PEOPLE[0], PEOPLE[1])
    ],
    name="\x00 <at id=all></at>",
)
def test_given_any_approval_content_each_flow_syncs_it_once_or_dead_letters_it_once(
    rt: Runtime, sandbox: SandboxClient, sandbox_store: SandboxStore, batch: list[Spec], name: str
) -> None:
    rename_people(sandbox_store, name)
    filed = [file(sandbox, sandbox_store, spec) for spec in batch]
    twins = [file(sandbox, sandbox_store, plain_twin(spec)) for spec in batch]
    next_second()

    for flow, platform in FLOWS.items():
        run = pull(rt, flow)

        assert run.status is runs.RunStatus.SUCCEEDED, (flow, run.error)
        assert run.cursor_after is not None
        with rt.engine.connect() as conn:
            assert cursors.get(conn, flow).cursor == run.cursor_after
        sent: dict[Filed, list[Mapping[str, Any]]] = {}
        read: dict[Filed, Record] = {}
        for approval in filed + twins:
            sent[approval] = sent_for(sandbox, platform, approval)
            letters = letters_for(rt, flow, approval)
            assert (len(sent[approval]), len(letters)) in ((1, 0), (0, 1)), (flow, approval)
            assert all(letter.reason for letter in letters)
            read[approval] = pulled(rt, run.id, approval)
            assert run.cursor_after >= read[approval].cursor_value
        for approval, twin in zip(filed, twins, strict=True):
            if sent[approval] and sent[twin]:
                made = structure(platform, sent[approval][0], approval, read[approval])
                plain = structure(platform, sent[twin][0], twin, read[twin])
                assert made == plain, (flow, approval)
