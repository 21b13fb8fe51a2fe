"""Switching a species to its promoted model once every annotation has a vector under it.

Ranking keeps using ``SpeciesModel.model_version`` while the species is re-embedded under
``pending_version``. The embedding service asks for a check after every batch it stores
under a pending version (``embedding_run.embedding_jobs_run``), and the job sweep checks
again, so the switch follows the last vector without a task polling for it.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from catalogue.models import Annotation, Species
from identification.models import EmbeddingJob, ModelVersion, SpeciesModel
from identification.selectors.species_models import reembedding_progress
from identification.services.calibration import calibration_request
from identification.services.embedding import annotations_embed_enqueue
from identification.services.matching import species_identifications_refresh
from identification.services.models import species_model_setting
from identification.services.search import embedding_index_ensure
from identification.tasks import species_model_switch_task
from wildweb.errors import ServiceError
from wildweb.jobs import task_send


def species_version_promote(*, species: Species, version: ModelVersion) -> SpeciesModel:
    """Make ``version`` the species' pending version and queue every annotation under it.

    The species keeps ranking with its active version until the switch.

    Raises:
        ServiceError: ``version`` is already the species' active version.
    """
    species_model_setting(species=species)
    with transaction.atomic():
        setting = SpeciesModel.objects.select_for_update().get(species=species)
        if setting.model_version_id == version.pk:
            raise ServiceError(f"{version.name} is already the active model of {species}.")
        setting.pending_version = version
        setting.save(update_fields=["pending_version"])
        species_reembed_enqueue(species=species, version=version)
        # One check now: when every vector already exists no batch runs to ask for it.
        transaction.on_commit(lambda: task_send(species_model_switch_task, species.pk))
    return setting


def species_reembed_enqueue(*, species: Species, version: ModelVersion) -> list[int]:
    """Queue (again) every annotation of the species that has no finished job under ``version``.

    Idempotent: safe to call after a lost broker message or a worker restart.
    """
    annotation_ids = list(Annotation.objects.filter(species=species).values_list("pk", flat=True))
    return annotations_embed_enqueue(annotation_ids=annotation_ids, version=version, identify=False)


def species_model_switch_if_ready(*, species: Species) -> bool:
    """Switch the species to its pending version if every annotation has a vector under it.

    The pending version's HNSW index is created first; then, in one transaction,
    ``model_version ← pending``, ``previous_version ← old``, ``pending ← None``, and the
    ranking method becomes the one the version's evaluation recommended
    (``metrics["recommended_ranking_method"]``). Once that commits, every undecided animal
    of the species is ranked again with the new model, and its ranking method is chosen
    again on the new vectors (a calibration job). Animals stored after the promotion
    have no job under the pending version; once nothing else is queued, they are queued.

    Returns:
        True when it switched now.
    """
    setting = SpeciesModel.objects.filter(species=species).select_related("pending_version").first()
    if setting is None or setting.pending_version is None:
        return False
    pending = setting.pending_version
    progress = reembedding_progress(setting=setting)
    # Failed jobs count as finished: a photo that cannot be embedded must not hold the switch
    # back for ever (its job keeps the reason).
    if progress["done"] + progress["failed"] < progress["total"]:
        _missing_jobs_enqueue(species=species, setting=setting)
        return False
    embedding_index_ensure(species_id=species.pk, version=pending)
    with transaction.atomic():
        setting = SpeciesModel.objects.select_for_update().get(species=species)
        if setting.pending_version_id != pending.pk:
            return False  # rolled back or promoted again meanwhile
        method = (pending.metrics or {}).get("recommended_ranking_method")
        setting.previous_version_id = setting.model_version_id
        setting.model_version = pending
        setting.pending_version = None
        setting.switched_at = timezone.now()
        fields = ["previous_version", "model_version", "pending_version", "switched_at"]
        if method in SpeciesModel.RankingMethod.values:
            setting.ranking_method = method
            fields.append("ranking_method")
        setting.save(update_fields=fields)
        species_identifications_refresh(species_id=species.pk)
        # The old version's choice and calibration do not apply to the new vectors.
        calibration_request(species_id=species.pk, because=f"switched to {pending.name}")
    return True


def _missing_jobs_enqueue(*, species: Species, setting: SpeciesModel) -> None:
    jobs = EmbeddingJob.objects.filter(
        model_version_id=setting.pending_version_id, annotation__species=species
    )
    if jobs.filter(state__in=[EmbeddingJob.State.QUEUED, EmbeddingJob.State.RUNNING]).exists():
        return  # still re-embedding; the last batch asks again
    missing = (
        Annotation.objects.filter(species=species)
        .exclude(pk__in=jobs.values("annotation_id"))
        .values_list("pk", flat=True)
    )
    if missing:
        annotations_embed_enqueue(
            annotation_ids=list(missing), version=setting.pending_version, identify=False
        )
