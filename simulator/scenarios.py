"""The failure scenarios of the reference guide as injectors: onset, target slice, expected rule.

A :class:`Scenario` is data: the healthy models and traffic of the world, what changes from
the onset on (the teacher or student on the target slice, the student everywhere, or the
traffic mix), the rule of ``evaluators/default_rules.yaml`` that must fire on the target slice
within two 60 s windows, and the side effects the guide says come with it.

Effect sizes start from the guide's numbers and are raised where a one-minute window could
not tell them from noise at the scenario's rate (each scenario says which), and each target
is a slice small enough that the effect, diluted in ``all`` and in the other slices, stays
clear of every threshold there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from simulator.models import Behaviour, Calibrated, Decoupled, Shifted
from simulator.world import HIGH_RISK, LIVE, OFFLINE_LIKE, Noise

TEACHER = Behaviour(
    role="teacher", version="t-1", accuracy=0.98, confidence=Calibrated(k=40), latency_ms=900.0,
    latency_sigma=0.3, fact_error=0.002, ungrounded_error=0.03, missing=0.002, cost_usd=0.003)
STUDENT = Behaviour(
    role="student", version="s-1", accuracy=0.975, confidence=Calibrated(k=10),
    class_accuracy={c: 0.995 for c in HIGH_RISK}, multi_intent_accuracy=0.96,
    latency_ms=90.0, latency_sigma=0.35, device_factor={"web": 1.1, "android-lowmem": 1.4},
    fact_error=0.0005, ungrounded_error=0.005, copy_teacher_error=0.1, unknown_title_error=0.001,
    snapshot_age_days=14.0, missing=0.002, cost_usd=0.0002)
"""A student that is safe to serve: no default rule fires on any slice (the clean control)."""


@dataclass(frozen=True)
class Expectation:
    """A rule expected to fire on exactly these slices (and on no other)."""

    rule: str
    slices: tuple[str, ...]
    why: str = ""


@dataclass(frozen=True)
class Plan:
    """Models and traffic before the onset, and what the onset changes."""

    teacher: Behaviour = TEACHER
    student: Behaviour = STUDENT
    noise: Noise = LIVE
    noise_after: Noise | None = None
    student_after: Behaviour | None = None
    """From the onset on, on all traffic (a new student version)."""
    teacher_target: Behaviour | None = None
    student_target: Behaviour | None = None
    """From the onset on, on the target slice only."""
    review_capacity_share: float | None = None
    """Human reviewers' capacity as a share of the review queue's expected inflow (None:
    ample capacity, each review done 5–20 minutes after its request)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    guide: str
    summary: str
    minutes: float
    rate: float
    onset_s: float | None = None
    target: str | None = None
    expected: tuple[Expectation, ...] = ()
    side_effects: tuple[Expectation, ...] = ()
    plan: Plan = Plan()
    notes: str = ""

    def onset_for(self, duration_s: float) -> float | None:
        """The default onset, moved to the middle of the run (a whole minute) if the run is
        too short to show four windows after it."""
        if self.onset_s is None:
            return None
        if duration_s >= self.onset_s + 240:
            return self.onset_s
        return max(60.0, (duration_s // 2) // 60 * 60)


def _student(**changes: object) -> Behaviour:
    return replace(STUDENT, **changes)  # type: ignore[arg-type]


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        name="clean", guide="control",
        summary="a healthy student on live traffic: no rule fires on any slice",
        minutes=120, rate=50),
    Scenario(
        name="copied_teacher_errors", guide="guide §3, scenario 1",
        summary="the teacher asserts wrong catalog facts on region=jp and the student copies them",
        minutes=10, rate=120, onset_s=300, target="region=jp",
        expected=(Expectation("copied_teacher_errors", ("region=jp",)),),
        plan=Plan(teacher_target=replace(TEACHER, fact_error=0.025),
                  student_target=_student(copy_teacher_error=0.9)),
        notes="Guide: student fact errors 1.1 %, 73 % of them the teacher's. Here 2.5 % teacher "
              "and ~2.3 % student errors on the target, 90 % copied: at the guide's 73 % the "
              "overlap interval on a minute's few dozen wrong claims still straddles 0.5."),
    Scenario(
        name="offline_vs_live", guide="guide §4, scenario 2",
        summary="a student distilled on clean offline prompts meets live multi-intent, typo-laden traffic",
        minutes=10, rate=60, onset_s=300, target="multi_intent=true",
        expected=(Expectation("teacher_agreement_low", ("multi_intent=true",)),),
        side_effects=(Expectation(
            "fallback_over_plan", ("multi_intent=true",),
            "a calibrated student unsure of mixed requests defers them to the teacher "
            "(guide scenario 5: distil the teacher better on ambiguous traffic)"),
            Expectation(
                "safety_escalation_recall_low", ("multi_intent=true",),
                "guide scenario 2: escalation recall falls to 0.81 on multi-intent messages; "
                "a minute holds only a handful of them, so it may or may not fire"),
            Expectation("payment_dispute_recall_low", ("multi_intent=true",), "likewise")),
        plan=Plan(student=_student(multi_intent_accuracy=0.62, multi_intent_escalation_accuracy=0.81,
                                   confidence=Calibrated(k=25)),
                  noise=OFFLINE_LIKE, noise_after=LIVE),
        notes="Before the onset the traffic looks like the offline set (1 % multi-intent, 2 % "
              "typos); after it, live (8 % and 12 %). The student was always weak on "
              "multi-intent prompts; the slice only gets enough support to be judged once "
              "live traffic arrives. Guide: teacher preference match 0.78 on that slice; here "
              "~0.62, since 0.78 is within one window's noise of the 0.77 threshold."),
    Scenario(
        name="rare_class_collapse", guide="guide §6, scenario 4",
        summary="safety-escalation recall collapses for Spanish prompts (language=es)",
        minutes=10, rate=120, onset_s=300, target="language=es",
        expected=(Expectation("safety_escalation_recall_low", ("language=es",)),),
        plan=Plan(student_target=_student(
            class_accuracy={**STUDENT.class_accuracy, "safety_escalation": 0.40})),
        notes="Guide: safety recall 95 % → 82 %. Here 99.5 % → 40 % on the target: a minute "
              "of Spanish traffic at 120 req/s holds ~17 safety escalations, too few to "
              "tell 82 % from 90 %."),
    Scenario(
        name="fallback_explosion", guide="guide §7, scenario 5",
        summary="an underconfident student on region=br sends ~38 % of its traffic to the teacher",
        minutes=10, rate=60, onset_s=300, target="region=br",
        expected=(Expectation("fallback_over_plan", ("region=br",)),),
        side_effects=(Expectation(
            "confidence_miscalibrated", ("region=br",),
            "underconfidence is miscalibration: the guide's router signal has student ECE 0.17"),),
        plan=Plan(student_target=_student(version="s-2", confidence=Shifted(0.0, 0.38))),
        notes="Guide: student accept rate 62 %, teacher fallback 38 %, ECE 0.17."),
    Scenario(
        name="calibration_break", guide="guide §8, scenario 6",
        summary="accuracy holds at ~90 % on language=ja but confidence stops tracking it",
        minutes=10, rate=60, onset_s=300, target="language=ja",
        expected=(Expectation("confident_errors", ("language=ja",)),
                  Expectation("confidence_miscalibrated", ("language=ja",))),
        plan=Plan(student_target=_student(version="s-2", accuracy=0.90, confidence=Decoupled())),
        notes="Guide: student B, accuracy 90 %, ECE 0.18, 8 % confident wrong answers."),
    Scenario(
        name="stale_student", guide="guide §9, scenario 7",
        summary="a student distilled on 97-day-old data is deployed; it is ungrounded on new titles",
        minutes=10, rate=50, onset_s=300, target="freshness=new",
        expected=(Expectation("new_titles_ungrounded", ("freshness=new",)),),
        plan=Plan(student_after=_student(version="s-2", snapshot_age_days=97.0,
                                         unknown_title_error=0.35)),
        notes="Guide: grounded answers 90 % (teacher) vs 72 % (student) on titles of the last "
              "60 days, dataset age p50 97 days. 30 % of catalog prompts name such titles, "
              "and a new title is released every 4 minutes."),
    Scenario(
        name="payload_sampling", guide="guide §10, scenario 8",
        summary="healthy traffic; stored payload rows must stay within the sampling policy's share",
        minutes=10, rate=50,
        notes="Guide: full payloads for 0.4 % sampled traffic plus 0.1 % risky (forensic) "
              "traffic; compact rows for everything. The truth file gives the expected number "
              "of shadow_payloads rows for the default policy."),
    Scenario(
        name="review_backlog", guide="guide §12, scenario 10",
        summary="human review of high-risk requests at 22.5 % of the inflow: the backlog grows",
        minutes=40, rate=20, plan=Plan(review_capacity_share=18_000 / 80_000),
        notes="Guide: 80,000 risky examples a week against 18,000 reviews a week. Here the "
              "week is compressed into the run: reviewers clear 22.5 % of the expected inflow "
              "per hour, first in first out, and the truth file gives the backlog over time. "
              "No default rule watches the backlog; labels arriving with growing delays are "
              "the measurable symptom."),
    Scenario(
        name="canary_slice", guide="guide §13, scenario 11",
        summary="a canary student is faster globally but over its latency budget on android-lowmem",
        minutes=10, rate=60, onset_s=300, target="device=android-lowmem",
        expected=(Expectation("student_latency_over_budget", ("device=android-lowmem",)),),
        plan=Plan(student_after=_student(
            version="s-2-canary", latency_ms=65.0, latency_sigma=0.3,
            device_factor={"web": 1.1, "android-lowmem": 2.1}, device_sigma={"android-lowmem": 0.6})),
        notes="Guide: global p95 190 → 150 ms while low-memory mobile p95 goes 240 → 330 ms. "
              "Here global p95 ~170 → ~150 ms and android-lowmem p95 ~220 → ~365 ms (budget "
              "300 ms): at 330 ms a minute's p95 over ~360 requests dips under 300 too often."),
)}


def get(name: str) -> Scenario:
    """The scenario called ``name``; KeyError lists the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(names())}") from None


def names() -> list[str]:
    return [*SCENARIOS, "regression"]
