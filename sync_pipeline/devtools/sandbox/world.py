"""A deterministic company, generated from a seed number, that every emulator seeds from.

The same people exist on every platform (matched by employee number, email and mobile), each
platform giving them its own user ids. Approvals, checkins and project records are generated
lazily, so a million approvals never sit in memory at once.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

SURNAMES = [
    "Wang",
    "Li",
    "Zhang",
    "Liu",
    "Chen",
    "Yang",
    "Zhao",
    "Huang",
    "Zhou",
    "Wu",
    "Xu",
    "Sun",
    "Hu",
    "Zhu",
    "Gao",
    "Lin",
    "He",
    "Guo",
    "Ma",
    "Luo",
]
GIVEN = [
    "Wei",
    "Fang",
    "Na",
    "Min",
    "Jing",
    "Li",
    "Qiang",
    "Lei",
    "Jun",
    "Yang",
    "Yong",
    "Yan",
    "Jie",
    "Juan",
    "Tao",
    "Ming",
    "Chao",
    "Xiu",
    "Xia",
    "Hui",
]
DEPARTMENTS = ("Headquarters", "Engineering", "Sales", "Finance", "HR", "Operations", "Legal")
TEMPLATES = ("leave", "expense", "general")
# Final and intermediate states; weights keep most approvals decided, as in a real OA.
STATES = ("pending", "approved", "rejected", "revoked")
STATE_WEIGHTS = (3, 5, 2, 1)
LEAVE_KINDS = ("annual", "sick", "personal", "marriage", "maternity")

# 2026-01-01T00:00:00Z: all generated times fall in the 300 days after it.
EPOCH_MS = 1_767_225_600_000
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Department:
    id: str  # "d1", "d2", ...; "d1" is the root
    name: str
    parent_id: str | None


@dataclass(frozen=True)
class Person:
    index: int
    employee_no: str  # "E00001": the key every platform shares
    name: str
    email: str
    mobile: str
    department_id: str
    manager_no: str | None


@dataclass(frozen=True)
class Group:
    id: str  # "g1", ...
    name: str
    owner_no: str
    member_nos: tuple[str, ...]
    project_id: str | None  # project groups carry their project


@dataclass(frozen=True)
class Project:
    id: str  # "P001"
    name: str
    owner_no: str
    member_nos: tuple[str, ...]


@dataclass(frozen=True)
class ApprovalStep:
    approver_no: str
    action: str  # "approve" | "reject" | "comment" | "submit"
    at_ms: int
    comment: str


@dataclass(frozen=True)
class Approval:
    number: int  # 1-based, unique per world
    request_id: str  # OA request id, "R000001"
    template: str  # leave | expense | general
    title: str
    applicant_no: str
    approver_nos: tuple[str, ...]  # the approval chain, in order
    state: str  # pending | approved | rejected | revoked
    current_approver_nos: tuple[str, ...]  # empty unless pending
    created_ms: int
    updated_ms: int
    form: dict[str, Any]
    history: tuple[ApprovalStep, ...]


@dataclass(frozen=True)
class Checkin:
    employee_no: str
    day_ms: int  # midnight UTC of the work day
    kind: str  # "on" | "off"
    at_ms: int
    result: str  # Normal | Late | Early | Lack


@dataclass(frozen=True)
class ProgressRecord:
    project_id: str
    record_id: str
    author_no: str
    at_ms: int
    percent: int
    text: str


@dataclass
class World:
    """Everything `syncctl sandbox seed` creates, from one seed number."""

    seed: int
    people_count: int = 60
    departments: list[Department] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    projects: list[Project] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.departments = [Department("d1", DEPARTMENTS[0], None)] + [
            Department(f"d{i + 1}", name, "d1") for i, name in enumerate(DEPARTMENTS[1:], start=1)
        ]
        for i in range(1, self.people_count + 1):
            dept = self.departments[1 + (i - 1) % (len(self.departments) - 1)]
            name = f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}"
            # The first person of each department is its manager; managers report to E00001.
            manager = None if i == 1 else ("E00001" if i <= len(self.departments) else None)
            self.people.append(
                Person(
                    index=i,
                    employee_no=f"E{i:05d}",
                    name=name,
                    email=f"{name.lower().replace(' ', '.')}.{i}@example.com",
                    mobile=f"+86-138{i:08d}",
                    department_id=dept.id,
                    manager_no=manager,
                )
            )
        nos = [p.employee_no for p in self.people]
        for i in range(1, 5):
            members = tuple(sorted(rng.sample(nos, min(len(nos), 8))))
            self.projects.append(Project(f"P{i:03d}", f"Project {i}", members[0], members))
        for i, dept in enumerate(self.departments[1:], start=1):
            members = tuple(p.employee_no for p in self.people if p.department_id == dept.id)
            self.groups.append(Group(f"g{i}", f"{dept.name} team", members[0], members, None))
        for project in self.projects:
            gid = f"g{len(self.groups) + 1}"
            self.groups.append(
                Group(
                    gid, f"{project.name} group", project.owner_no, project.member_nos, project.id
                )
            )

    def person(self, employee_no: str) -> Person:
        return self.people[int(employee_no[1:]) - 1]

    def approvals(self, count: int, start: int = 1) -> Iterator[Approval]:
        """Approvals number `start` .. `start + count - 1`; each depends only on (seed, number)."""
        for number in range(start, start + count):
            yield self.approval(number)

    def approval(self, number: int) -> Approval:
        rng = random.Random(self.seed * 1_000_003 + number)
        applicant = self.people[rng.randrange(len(self.people))]
        others = [p.employee_no for p in self.people if p.employee_no != applicant.employee_no]
        chain = tuple(rng.sample(others, rng.choice((1, 1, 2, 3))))
        template = TEMPLATES[number % len(TEMPLATES)]
        state = rng.choices(STATES, STATE_WEIGHTS)[0]
        created = EPOCH_MS + rng.randrange(300 * DAY_MS)
        steps: list[ApprovalStep] = [ApprovalStep(applicant.employee_no, "submit", created, "")]
        at = created
        current: tuple[str, ...] = ()
        decided = chain if state == "approved" else chain[: rng.randrange(len(chain))]
        for approver in decided:
            at += rng.randrange(1, 48) * 3_600_000
            steps.append(ApprovalStep(approver, "approve", at, rng.choice(("OK", "Agreed", ""))))
        if state == "pending":
            current = (chain[len(decided)],)
        elif state == "rejected":
            at += rng.randrange(1, 48) * 3_600_000
            steps.append(ApprovalStep(chain[len(decided)], "reject", at, "Please revise"))
        elif state == "revoked":
            at += rng.randrange(1, 48) * 3_600_000
            steps.append(ApprovalStep(applicant.employee_no, "revoke", at, "Withdrawn"))
        return Approval(
            number=number,
            request_id=f"R{number:06d}",
            template=template,
            title=_title(template, applicant.name, number),
            applicant_no=applicant.employee_no,
            approver_nos=chain,
            state=state,
            current_approver_nos=current,
            created_ms=created,
            updated_ms=at,
            form=_form(template, rng, created),
            history=tuple(steps),
        )

    def checkins(self, days: int) -> Iterator[Checkin]:
        """Two punches a person a work day, over `days` days from EPOCH."""
        for day in range(days):
            day_ms = EPOCH_MS + day * DAY_MS
            if (day + 3) % 7 in (5, 6):  # 2026-01-01 is a Thursday: skip Saturdays and Sundays
                continue
            for person in self.people:
                rng = random.Random(f"{self.seed}/{person.employee_no}/{day}")
                late = rng.random() < 0.08
                on = day_ms + (1 if late else 0) * rng.randrange(60, 3600) * 1000 + 3_600_000
                yield Checkin(person.employee_no, day_ms, "on", on, "Late" if late else "Normal")
                if rng.random() < 0.02:
                    yield Checkin(person.employee_no, day_ms, "off", 0, "Lack")
                else:
                    off = day_ms + 10 * 3_600_000 + rng.randrange(0, 7200) * 1000
                    yield Checkin(person.employee_no, day_ms, "off", off, "Normal")

    def progress(self, per_project: int) -> Iterator[ProgressRecord]:
        for project in self.projects:
            rng = random.Random(f"{self.seed}/{project.id}")
            for i in range(1, per_project + 1):
                yield ProgressRecord(
                    project_id=project.id,
                    record_id=f"{project.id}-{i:04d}",
                    author_no=rng.choice(project.member_nos),
                    at_ms=EPOCH_MS + i * DAY_MS,
                    percent=min(100, i * 100 // per_project),
                    text=f"Milestone {i} of {project.name}",
                )


def _title(template: str, applicant: str, number: int) -> str:
    kind = {"leave": "Leave request", "expense": "Expense claim", "general": "Request"}[template]
    return f"{kind} #{number} from {applicant}"


def _form(template: str, rng: random.Random, created_ms: int) -> dict[str, Any]:
    if template == "leave":
        start = created_ms + rng.randrange(1, 30) * DAY_MS
        days = rng.choice((0.5, 1, 2, 3, 5))
        return {
            "leave_type": rng.choice(LEAVE_KINDS),
            "start_ms": start,
            "end_ms": start + int(days * DAY_MS),
            "days": days,
            "reason": rng.choice(("Family matters", "Travel", "Medical appointment", "Rest")),
        }
    if template == "expense":
        return {
            "amount": round(rng.uniform(20, 5000), 2),
            "currency": "CNY",
            "category": rng.choice(("travel", "meals", "equipment", "training")),
            "reason": rng.choice(("Client visit", "Conference", "Team dinner", "Laptop")),
        }
    return {"subject": rng.choice(("Access request", "Purchase", "Contract review")), "detail": ""}
