"""Promoting a trained model: re-embed the species, switch when every vector exists, roll back.

Ranking keeps using ``SpeciesModel.model_version`` (and its vectors) while the species is
re-embedded under ``pending_version``. The switch happens only when the database says every
annotation of the species has a vector under the pending version; checking is idempotent and
is done by a task that reschedules itself, by every worker at start-up, and by the pages
that show the progress.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from catalogue.models import Annotation, Species
from identification.models import EmbeddingJob, ModelVersion, SpeciesModel
from identification.services.embedding import annotations_embed_enqueue
from identification.services.matching import species_identifications_refresh
from identification.services.models import species_model_setting
from identification.services.search import embedding_index_ensure
from training.models import TrainingRun
from training.services.runs import run_log
from wildweb.errors import ConflictError, ServiceError


def candidate_version_ensure(*, run: TrainingRun) -> ModelVersion:
    """The model version made from a succeeded run's model (created once)."""
    if run.candidate_version_id:
        return run.candidate_version
    if run.status != TrainingRun.Status.SUCCEEDED or not run.report.get("candidate"):
        raise ServiceError("Only a run that succeeded can be promoted.")
    candidate = run.report["candidate"]
    version, _ = ModelVersion.objects.get_or_create(
        name=f"run{run.pk}-{run.species.slug}"[:100],
        defaults={"backbone": candidate["backbone"], "weights": candidate["model_path"],
                  "embedding_dim": candidate["embedding_dim"],
                  "image_size": candidate["image_size"],
                  "metrics": {k: run.report.get(k) for k in ("before", "after", "zero_shot",
                                                             "recommended_ranking_method")}},
    )
    TrainingRun.objects.filter(pk=run.pk).update(candidate_version=version)
    run.candidate_version = version
    return version


def model_promote(*, run: TrainingRun) -> SpeciesModel:
    """Make a run's model the species' pending version and re-embed every annotation under it.

    Raises:
        ServiceError: The run did not succeed, or its model is already the active one.
    """
    with transaction.atomic():
        version = candidate_version_ensure(run=run)
        species_model_setting(species=run.species)
        setting = SpeciesModel.objects.select_for_update().get(species=run.species)
        if setting.model_version_id == version.pk:
            raise ServiceError(f"{version.name} is already the active model of {run.species}.")
        setting.pending_version = version
        setting.save(update_fields=["pending_version"])
        species_reembed_enqueue(species=run.species, version=version)
        run_log(run_id=run.pk, line=f"Promoted as {version.name}; re-embedding {run.species}.")
        species_id = run.species_id
        transaction.on_commit(lambda: _switch_check_send(species_id))
    return setting


def species_reembed_enqueue(*, species: Species, version: ModelVersion) -> list[int]:
    """Queue (again) every annotation of the species that has no finished job under ``version``.

    Idempotent: safe to call after a lost broker message or a worker restart.
    """
    annotation_ids = list(Annotation.objects.filter(species=species).values_list("pk", flat=True))
    return annotations_embed_enqueue(annotation_ids=annotation_ids, version=version,
                                     identify=False)


def reembedding_progress(*, setting: SpeciesModel) -> dict[str, int] | None:
    """Annotations of the species embedded under its pending version so far (None: none pending)."""
    if setting.pending_version_id is None:
        return None
    total = Annotation.objects.filter(species_id=setting.species_id).count()
    jobs = EmbeddingJob.objects.filter(model_version_id=setting.pending_version_id,
                                       annotation__species_id=setting.species_id)
    done = jobs.filter(state=EmbeddingJob.State.DONE).count()
    failed = jobs.filter(state=EmbeddingJob.State.FAILED).count()
    return {"total": total, "done": done, "failed": failed,
            "percent": round(100 * done / total) if total else 100}


def species_model_switch_if_ready(*, species: Species) -> bool:
    """Switch the species to its pending version if every annotation has a vector under it.

    The pending version's HNSW index is created first; then, in one transaction,
    ``model_version ← pending``, ``previous_version ← old``, ``pending ← None``, and the
    ranking method becomes the one the run's evaluation recommended. Once that commits, every
    undecided animal of the species is ranked again with the new model.

    Returns:
        True when it switched now.
    """
    setting = SpeciesModel.objects.filter(species=species).select_related("pending_version").first()
    if setting is None or setting.pending_version is None:
        return False
    progress = reembedding_progress(setting=setting)
    # Failed jobs count as finished: a photo that cannot be embedded must not hold the
    # switch back for ever (its job keeps the reason).
    if progress["done"] + progress["failed"] < progress["total"]:
        return False
    pending = setting.pending_version
    embedding_index_ensure(species_id=species.pk, version=pending)
    with transaction.atomic():
        setting = SpeciesModel.objects.select_for_update().get(species=species)
        if setting.pending_version_id != pending.pk:
            return False  # rolled back or promoted again meanwhile
        run = TrainingRun.objects.filter(candidate_version=pending).order_by("-pk").first()
        method = (run.report or {}).get("recommended_ranking_method") if run else None
        setting.previous_version_id = setting.model_version_id
        setting.model_version = pending
        setting.pending_version = None
        setting.switched_at = timezone.now()
        fields = ["previous_version", "model_version", "pending_version", "switched_at"]
        if method in SpeciesModel.RankingMethod.values:
            setting.ranking_method = method
            fields.append("ranking_method")
        setting.save(update_fields=fields)
        refreshed = species_identifications_refresh(species_id=species.pk)
        if run is not None:
            run_log(run_id=run.pk, line=f"{species} now ranks with {pending.name} ({method}); "
                                        f"re-ranking {refreshed} undecided animal(s).")
    return True


def model_rollback(*, species: Species) -> SpeciesModel:
    """Go back to the previous version in one step (its vectors were kept), then rank every
    undecided animal of the species again with it."""
    with transaction.atomic():
        setting = SpeciesModel.objects.select_for_update().filter(species=species).first()
        if setting is None or setting.previous_version_id is None:
            raise ConflictError(f"{species} has no previous model version to go back to.")
        embedding_index_ensure(species_id=species.pk, version=setting.previous_version)
        setting.model_version_id, setting.previous_version_id = (
            setting.previous_version_id, setting.model_version_id)
        setting.pending_version = None
        setting.switched_at = timezone.now()
        setting.save(update_fields=["model_version", "previous_version", "pending_version",
                                    "switched_at"])
        species_identifications_refresh(species_id=species.pk)
    return setting


def promotions_resume() -> list[int]:
    """For every species with a pending version: queue missing vectors again, check the switch.

    Returns:
        Ids of the species that switched.
    """
    switched = []
    for setting in SpeciesModel.objects.filter(pending_version__isnull=False).select_related(
            "species", "pending_version"):
        if species_model_switch_if_ready(species=setting.species):
            switched.append(setting.species_id)
        else:
            # Sends every unfinished job again; claiming makes duplicates harmless.
            species_reembed_enqueue(species=setting.species, version=setting.pending_version)
            species_id = setting.species_id
            transaction.on_commit(lambda sid=species_id: _switch_check_send(sid))
    return switched


def promotions_switch_check() -> list[int]:
    """Switch every species whose re-embedding has finished (the periodic sweep's part).

    Returns:
        Ids of the species that switched.
    """
    return [
        setting.species_id
        for setting in SpeciesModel.objects.filter(pending_version__isnull=False).select_related(
            "species")
        if species_model_switch_if_ready(species=setting.species)
    ]


def _switch_check_send(species_id: int) -> None:
    from training.tasks import species_model_switch_task
    from wildweb.jobs import task_send

    task_send(species_model_switch_task, species_id, countdown=2)
