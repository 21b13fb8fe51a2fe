"""A GET never writes: every URL of every app, opened by each role, only reads the database.

A page may be opened by a reload, a link preview or a browser's prefetch; a change of state
needs a POST (with its CSRF token). The URLs are walked from the resolver, so a new page is
covered without being listed here.
"""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from catalogue.models import Encounter
from identification.models import IdentityDecision, MatchCandidate, ModelVersion, SpeciesModel
from identification.services.decisions import individual_merge, match_decide
from identification.services.models import zero_shot_version
from notifications.models import Notification, NotificationPreference
from notifications.services import notify_candidates_ready
from tests.factories import (
    EncounterFactory,
    IndividualFactory,
    SpeciesFactory,
    UserFactory,
    confirmed_sighting,
    ranked_photo,
)
from tests.helpers import every_url, jpeg_bytes
from training.models import TrainingRun
from training.services.imports import dataset_import_upload

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "volunteer", "expert", "admin")
WRITES = ("INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "TRUNCATE")
# Pages each role must open (200) at least once: the walk is not all refusals.
OPENS = {
    "anonymous": {"home", "species-list", "species-detail", "individual-detail", "search"},
    "volunteer": {
        "notifications",
        "notification-preferences",
        "my-sightings",
        "sighting-detail",
        "media-file",
        "review-queue",
        "review-annotation",
        "candidate-correspondences",
    },
    "expert": {"dashboard", "exports", "export-capture-history", "individual-merge"},
    "admin": {
        "training-index",
        "training-species",
        "training-species-model",
        "training-run",
        "training-run-progress",
        "training-import-detail",
        "admin:index",
    },
}


def _world(owner: object) -> tuple[dict[str, list[object]], dict[str, str]]:
    """One of each thing a URL names (the values of its arguments), ``owner``'s sighting
    waiting for review among them, and the query strings some pages read."""
    species = SpeciesFactory(name="Lynx", sensitive=True)
    public = IndividualFactory(species=species, code="L-1")
    confirmed_sighting(individual=public)
    private = IndividualFactory(species=species, is_public=False)
    expert = UserFactory(role="expert")
    merge = individual_merge(
        kept=public, merged=IndividualFactory(species=species), merged_by=expert
    )
    encounter = EncounterFactory(
        species=species, submitted_by=owner, status=Encounter.Status.AWAITING_REVIEW
    )
    photo = ranked_photo(encounter=encounter, ranking=[(public, 0.8), (private, 0.1)])
    photo.image.thumbnail.save("thumb.jpg", ContentFile(jpeg_bytes((32, 24))))
    decided = ranked_photo(encounter=EncounterFactory(species=species), ranking=[(private, 0.5)])
    decision = match_decide(
        annotation=decided,
        verdict=IdentityDecision.Verdict.REJECT,
        decided_by=expert,
        individual=private,
    )
    # Unread: opening the list keeps it so.
    notify_candidates_ready(encounter_id=encounter.pk, probably_new=False)
    # Training: a species without a model setting row (pages show version 0, create nothing)
    # and one whose pending version is ready to switch (a worker's job, not a page view's).
    unset, promoted = SpeciesFactory(), SpeciesFactory()
    SpeciesModel.objects.create(
        species=promoted,
        model_version=zero_shot_version(),
        pending_version=ModelVersion.objects.create(
            name="run1-candidate",
            backbone="tf_efficientnet_lite0",
            weights="imagenet",
            embedding_dim=1280,
        ),
    )
    run = TrainingRun.objects.create(
        species=unset, base_version=zero_shot_version(), status=TrainingRun.Status.RUNNING
    )
    upload = dataset_import_upload(
        species=unset,
        uploaded_file=SimpleUploadedFile("animals.csv", b"identity,path\nA,a.jpg\n"),
        started_by=None,
    )
    values = {
        "slug": [species.slug],
        "individual_id": [public.pk, private.pk, merge.merged_id],
        "encounter_id": [encounter.pk],
        "annotation_id": [photo.pk],
        "candidate_id": list(
            MatchCandidate.objects.filter(identification__annotation=photo).values_list(
                "pk", flat=True
            )
        ),
        "decision_id": [decision.pk],
        "merge_id": [merge.pk],
        "path": [photo.image.file.name, photo.image.thumbnail.name],
        "species_id": [species.pk, unset.pk, promoted.pk],
        "run_id": [run.pk],
        "import_id": [upload.pk],
        "action": ["cancel"],
    }
    queries = {
        "search": "?q=L",
        "review-queue": f"?species={species.pk}",
        "review-individual-search": "?q=L-",
        "export-capture-history": f"?species={species.slug}&days=30",
    }
    return values, queries


@pytest.mark.parametrize("role", ROLES)
def test_every_get_of_every_app_only_reads(role: str) -> None:
    user = UserFactory(role=role) if role != "anonymous" else None
    owner = user or UserFactory(role="volunteer")
    values, queries = _world(owner)
    urls, skipped = every_url(values)
    # Left out: the Django admin's pages of one object, and Django's password reset link.
    assert {n for n in skipped if not n.startswith("admin:")} == {"password_reset_confirm"}
    client = Client()
    if user:
        client.force_login(user)
    opened: set[str] = set()
    with CaptureQueriesContext(connection) as captured:
        for name, url in urls:
            for headers in ({}, {"HX-Request": "true"}):  # the page and its live part
                response = client.get(url + queries.get(name, ""), headers=headers)
                assert response.status_code < 500, (url, response.status_code)
                if response.status_code == 200:
                    opened.add(name)
    writes = [q["sql"] for q in captured if q["sql"].lstrip().split()[0].upper() in WRITES]
    assert writes == []
    everyone_opens = set().union(*(OPENS[r] for r in ROLES[: ROLES.index(role) + 1]))
    assert everyone_opens - opened == set()
    assert Notification.objects.get(user=owner).read_at is None
    assert not NotificationPreference.objects.exists()
