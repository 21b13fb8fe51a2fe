"""The experts' dashboard: animals waiting per species, recent decisions, votes that disagree,
and how the ranking does on the experts' decisions (live accuracy)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count, F, Q, QuerySet

from catalogue.models import Annotation, Species
from identification.models import IdentityDecision, SpeciesModel, Vote
from identification.selectors.review import review_queue
from identification.services.models import ZERO_SHOT_NAME


@dataclass(frozen=True)
class LiveAccuracy:
    """How the ranking did on the experts' standing decisions, per species and model."""

    species: str
    model_version: str
    confirmed: int  # decisions that an individual already known is the animal
    top1: int
    top5: int
    new: int  # decisions that the animal is a new individual
    flagged: int  # decisions where "probably new" was up
    flagged_new: int  # ... and the animal was indeed new

    @staticmethod
    def share(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    @property
    def top1_rate(self) -> float | None:
        return self.share(self.top1, self.confirmed)

    @property
    def top1_se(self) -> float | None:
        """Binomial standard error of the top-1 rate, as ``evaluate`` reports its own."""
        rate = self.top1_rate
        return math.sqrt(rate * (1 - rate) / self.confirmed) if rate is not None else None

    @property
    def top5_rate(self) -> float | None:
        return self.share(self.top5, self.confirmed)

    @property
    def flag_precision(self) -> float | None:
        """How often "probably new" was right."""
        return self.share(self.flagged_new, self.flagged)

    @property
    def new_flagged_rate(self) -> float | None:
        """How many of the truly new animals were flagged."""
        return self.share(self.flagged_new, self.new)


def live_accuracy() -> list[LiveAccuracy]:
    """Every standing expert decision on a ranked animal, counted as evaluation data.

    A decision keeps the rank its individual had in the review's ranking of the animal (all
    its photos, ``reid.ranking.sighting_combine`` of the stored scores), the order
    ``evaluate``'s sighting-level top-1 measures.

    Decisions made before the ranking was recorded with them (no model version) and
    rejections (they say who the animal is not) are left out.
    """
    rows: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    decisions = IdentityDecision.objects.filter(
        reverted_at__isnull=True,
        model_version__isnull=False,
        verdict__in=[IdentityDecision.Verdict.SAME, IdentityDecision.Verdict.NEW],
    ).values_list(
        "annotation__species__name",
        "model_version__name",
        "verdict",
        "confirmed_rank",
        "probably_new",
    )
    for species, version, verdict, rank, flagged in decisions:
        row = rows[(species, version)]
        if verdict == IdentityDecision.Verdict.SAME:
            row["confirmed"] += 1
            row["top1"] += rank == 1
            row["top5"] += rank is not None and rank <= 5
        else:
            row["new"] += 1
        row["flagged"] += bool(flagged)
        row["flagged_new"] += bool(flagged) and verdict == IdentityDecision.Verdict.NEW
    return [
        LiveAccuracy(
            species=species,
            model_version=version,
            **{k: row[k] for k in ("confirmed", "top1", "top5", "new", "flagged", "flagged_new")},
        )
        for (species, version), row in sorted(rows.items())
    ]


@dataclass(frozen=True)
class SpeciesDashboardRow:
    species: Species
    queue_size: int
    model_name: str
    ranking_method: str
    pending_model_name: str
    threshold: float  # "probably new" below this probability of the first candidate
    threshold_fitted: bool  # chosen by calibrate under the model in use, else the hand-set one
    # BAKS, BAUS, geometric_mean, n_known, n_unknown on held-out individuals; None: not
    # measured under the model and local method in use.
    open_set: dict | None


def _open_set_measured(setting: SpeciesModel | None) -> dict | None:
    """The held-out BAKS and BAUS stored with the species' current ranking choice."""
    if setting is None or not setting.method_choice_current:
        return None
    open_set = setting.method_choice.get("open_set") or {}
    return open_set if open_set.get("folds") else None


def dashboard_species_rows() -> list[SpeciesDashboardRow]:
    """Per species: animals waiting for an expert (one per animal of a sighting, however many
    photos show it), the model that ranks their candidates, and its "probably new" threshold
    with the BAKS and BAUS it had on individuals it was not chosen on."""
    queue = dict(
        review_queue().values_list("annotation__species").annotate(size=Count("pk")).order_by()
    )
    settings_by_species = {
        s.species_id: s
        for s in SpeciesModel.objects.select_related("model_version", "pending_version")
    }
    rows = []
    for species in Species.objects.order_by("name"):
        setting = settings_by_species.get(species.pk)
        rows.append(
            SpeciesDashboardRow(
                species=species,
                queue_size=queue.get(species.pk, 0),
                model_name=setting.model_version.name if setting else f"{ZERO_SHOT_NAME} (default)",
                ranking_method=setting.get_ranking_method_display() if setting else "—",
                pending_model_name=setting.pending_version.name
                if setting and setting.pending_version
                else "",
                threshold=setting.probably_new_threshold
                if setting
                else SpeciesModel.DEFAULT_NEW_INDIVIDUAL_THRESHOLD,
                threshold_fitted=bool(setting) and setting.threshold_fitted,
                open_set=_open_set_measured(setting),
            )
        )
    return rows


def dashboard_recent_decisions(*, limit: int = 20) -> QuerySet:
    return IdentityDecision.objects.select_related(
        "annotation__species",
        "candidate",
        "individual_before",
        "individual_after",
        "decided_by",
        "reverted_by",
    ).order_by("-decided_at", "-pk")[:limit]


def dashboard_disagreements(*, limit: int = 50) -> QuerySet:
    """Volunteer votes that contradict the identity an expert decided.

    A "same" vote for another individual than the decided one, or a "different" vote for the
    decided one.
    """
    decided = Q(
        annotation__individual__isnull=False,
        annotation__identity_source=Annotation.IdentitySource.EXPERT,
    )
    contradicts = (Q(same=True) & ~Q(individual=F("annotation__individual"))) | Q(
        same=False, individual=F("annotation__individual")
    )
    return (
        Vote.objects.filter(decided)
        .filter(contradicts)
        .select_related("annotation__individual", "annotation__species", "individual", "voter")
        .order_by("-voted_at")[:limit]
    )
