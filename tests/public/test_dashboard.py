"""The experts' dashboard: queues, decisions, disagreements, models per species."""

from __future__ import annotations

import pytest
from django.urls import reverse

from identification.models import Identification, IdentityDecision, Vote
from identification.services.models import species_model_setting
from tests.factories import AnnotationFactory, IndividualFactory, SpeciesFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_dashboard_shows_queues_decisions_disagreements_and_models(client) -> None:
    lynx, wolf = SpeciesFactory(name="Lynx"), SpeciesFactory(name="Wolf")
    for _ in range(3):
        Identification.objects.create(
            annotation=AnnotationFactory(image__encounter__species=lynx),
            state=Identification.State.READY,
        )
    Identification.objects.create(
        annotation=AnnotationFactory(image__encounter__species=lynx),
        state=Identification.State.QUEUED,
    )  # not ready: not queued
    species_model_setting(species=wolf)
    expert, volunteer = (
        UserFactory(role="expert", username="erin"),
        UserFactory(role="volunteer", username="vic"),
    )
    decided, other = (IndividualFactory(species=lynx, code=c) for c in ("LX-1", "LX-2"))
    annotation = AnnotationFactory(
        image__encounter__species=lynx, individual=decided, identity_source="expert"
    )
    IdentityDecision.objects.create(
        annotation=annotation,
        verdict="same",
        candidate=decided,
        individual_after=decided,
        decided_by=expert,
    )
    Vote.objects.create(annotation=annotation, individual=other, voter=volunteer, same=True)
    Vote.objects.create(annotation=annotation, individual=decided, voter=expert, same=True)

    client.force_login(expert)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 200
    rows = {row.species.name: row for row in response.context["species_rows"]}
    assert rows["Lynx"].queue_size == 3 and rows["Wolf"].queue_size == 0
    assert rows["Wolf"].model_name == "v0-imagenet-lite0-gem"
    assert rows["Lynx"].model_name.endswith("(default)")
    assert [d.candidate.code for d in response.context["decisions"]] == ["LX-1"]
    disagreements = list(response.context["disagreements"])
    assert [(v.voter.username, v.individual.code) for v in disagreements] == [("vic", "LX-2")]
    text = response.content.decode()
    assert "same as LX-2" in text and "Same individual" in text


def test_empty_dashboard_explains_itself(client) -> None:
    client.force_login(UserFactory(role="admin"))
    text = client.get(reverse("dashboard")).content.decode()
    assert "No decisions yet" in text and "No disagreements" in text


def test_dashboard_shows_each_species_threshold_and_its_held_out_baks_and_baus(client) -> None:  # noqa: ANN001
    from identification.models import ModelVersion

    measured, legacy, switched, bare = (
        SpeciesFactory(name=name) for name in ("Lynx", "Otter", "Wolf", "Zebra")
    )
    figures = {"BAKS": 0.8, "BAUS": 0.45, "geometric_mean": 0.6, "n_known": 40, "n_unknown": 38}
    for species, open_set in ((measured, figures), (legacy, None), (switched, figures)):
        setting = species_model_setting(species=species)
        setting.calibration_version = setting.model_version
        setting.new_individual_threshold = 0.4321
        setting.method_choice = {"method": "fused", "local_method": setting.local_method}
        if open_set:  # a choice stored before the figures were measured has none
            setting.method_choice["open_set"] = open_set | {"folds": 5}
        setting.save()
    # After a switch the fitted threshold and its figures no longer apply.
    switched.model_setting.model_version = ModelVersion.objects.create(
        name="v1-wolf", backbone="tf_efficientnet_lite0", weights="x.pt", embedding_dim=1280
    )
    switched.model_setting.save()

    client.force_login(UserFactory(role="expert"))
    response = client.get(reverse("dashboard"))
    rows = {row.species.name: row for row in response.context["species_rows"]}
    assert rows["Lynx"].open_set["BAKS"] == 0.8 and rows["Lynx"].threshold == 0.4321
    assert rows["Otter"].open_set is None and rows["Otter"].threshold_fitted
    assert rows["Wolf"].open_set is None and rows["Wolf"].threshold == 0.5
    assert rows["Zebra"].open_set is None and not rows["Zebra"].threshold_fitted
    text = response.content.decode()
    lynx = text[text.index('data-species="lynx"') :].split("</tr>")[0]
    assert "0.432" in lynx and "threshold-default" not in lynx
    assert all(figure in lynx for figure in ("0.800", "0.450", "0.600"))
    assert "40 known, 38 unknown queries" in lynx
    for slug in ("otter", "wolf", "zebra"):
        assert "not measured yet" in text[text.index(f'data-species="{slug}"') :].split("</tr>")[0]
    assert text.count("threshold-default") == 2  # the wolf under its new model, the zebra


def test_live_accuracy_counts_every_standing_expert_decision(client) -> None:  # noqa: ANN001
    from identification.models import ModelVersion
    from identification.services.decisions import decision_revert, match_decide
    from identification.services.pipeline import species_register
    from tests.factories import EncounterFactory, ranked_photo

    chimp, lynx = species_register(name="Chimpanzee"), species_register(name="Lynx")
    a, b, c = (IndividualFactory(species=chimp, code=code) for code in ("A", "B", "C"))
    expert = UserFactory(role="expert")

    def decide(ranking, verdict, individual=None, probably_new=False, species=chimp, version=None):  # noqa: ANN001, ANN202
        photo = ranked_photo(
            encounter=EncounterFactory(species=species), ranking=ranking,
            probably_new=probably_new, model_version=version,
        )  # fmt: skip
        return match_decide(
            annotation=photo, verdict=verdict, individual=individual, decided_by=expert
        )

    decide([(a, 0.9), (b, 0.5)], "same", a)  # first candidate
    decide([(b, 0.8), (a, 0.6)], "same", a)  # second: in the top 5 only
    decide([(b, 0.3)], "new", probably_new=True)  # flagged, and new indeed
    decide([(a, 0.2)], "same", a, probably_new=True)  # flagged, but known
    decide([(b, 0.9)], "same", c)  # found with the search box: not among the candidates
    decision_revert(decision=decide([(a, 0.9)], "same", a), reverted_by=expert)  # not standing
    trained = ModelVersion.objects.create(
        name="v1-lynx", backbone="tf_efficientnet_lite0", weights="x.pt", embedding_dim=1280
    )
    x = IndividualFactory(species=lynx, code="X")
    decide(
        [(IndividualFactory(species=lynx), 0.7), (x, 0.6)], "same", x, species=lynx, version=trained
    )

    client.force_login(expert)
    response = client.get(reverse("dashboard"))
    rows = {(r.species, r.model_version): r for r in response.context["live_accuracy"]}
    chimps = rows[("Chimpanzee", "v0-imagenet-lite0-gem")]
    assert (chimps.confirmed, chimps.top1, chimps.top5) == (4, 2, 3)
    assert (chimps.new, chimps.flagged, chimps.flagged_new) == (1, 2, 1)
    assert (chimps.top1_rate, chimps.top5_rate, chimps.flag_precision) == (0.5, 0.75, 0.5)
    lynxes = rows[("Lynx", "v1-lynx")]
    assert (lynxes.confirmed, lynxes.top1, lynxes.top5, lynxes.flag_precision) == (1, 0, 1, None)
    text = response.content.decode()
    assert "0.50 (2/4)" in text and "0.75 (3/4)" in text and "0.50 (1/2)" in text


def test_live_accuracy_and_evaluate_agree_on_the_same_decisions() -> None:
    """The experts confirm four animals ranked by the hand-set fusion. The dashboard counts
    each decision at its individual's rank on the review page; evaluate's sighting-level top-1
    ranks the same stored candidates with ``reid.ranking``: the two agree (where ordering by
    the calibrated probability would have found 2 of 4, not 3)."""
    from identification.selectors.dashboard import live_accuracy
    from identification.services.decisions import match_decide
    from identification.services.pipeline import species_register
    from reid.evaluation import sighting_metrics
    from reid.ranking import Candidate, rank
    from tests.factories import EncounterFactory, searched_photo

    chimp = species_register(name="Chimpanzee")
    ind = {code: IndividualFactory(species=chimp, code=code) for code in "ABCD"}
    flip = [("A", 0.85, 0), ("B", 0.50, 8)]
    two_photos = [[("A", 0.85, 0), ("C", 0.60, 2)], [("B", 0.50, 8), ("A", 0.78, 1)]]
    clear = [[("C", 0.90, 4), ("D", 0.70, 30)]]
    animals = [([flip], "B"), (two_photos, "A"), (two_photos, "B"), (clear, "D")]
    expert, rankings = UserFactory(role="expert"), []
    for photos, truth in animals:
        sighting = EncounterFactory(species=chimp)
        stored = [
            searched_photo(
                encounter=sighting, evidence=[(ind[code], c, n) for code, c, n in evidence]
            )
            for evidence in photos
        ]
        match_decide(annotation=stored[0], verdict="same", individual=ind[truth], decided_by=expert)
        for photo in stored:
            candidates = [
                Candidate(
                    c.individual_id, c.gallery_annotation_id, c.embedding_score, c.inlier_count
                )
                for c in photo.identification.candidates.all()
            ]
            rankings.append((sighting.pk, ind[truth].pk, rank(candidates, "fused")))
    evaluated = sighting_metrics(rankings)
    (live,) = live_accuracy()
    assert (live.confirmed, live.top1) == (evaluated["n_sightings"], 3)
    assert live.top1_rate == pytest.approx(evaluated["sighting_top1"])
    assert live.top1_se == pytest.approx(evaluated["sighting_top1_se"])
