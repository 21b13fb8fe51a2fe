"""Admin pages: add a species, import labelled data, train, compare, promote, roll back."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from catalogue.models import Species
from catalogue.roles import MANAGE_SPECIES_PERMISSION
from identification.models import SpeciesModel
from identification.selectors.species_models import (
    calibration_job_get,
    embedding_progress,
    reembedding_progress,
    species_model_get,
)
from identification.services.pipeline import species_register
from training import selectors
from training.forms import DatasetUploadForm, SpeciesForm, TrainingRunForm
from training.models import DatasetImport, TrainingRun
from training.services import imports, promotion, runs
from wildweb.errors import ServiceError

TRAIN_PERMISSION = "training.add_trainingrun"


def _admin_only(view):  # noqa: ANN001, ANN202 - decorator
    return login_required(permission_required(TRAIN_PERMISSION, raise_exception=True)(view))


@_admin_only
def species_index(request: HttpRequest) -> HttpResponse:
    overview = selectors.species_overview_list()
    # While a promoted model re-embeds, the table asks for news until the switch shows.
    switching = any(row["setting"] and row["setting"].pending_version_id for row in overview)
    template = (
        "training/_species_table.html"
        if request.headers.get("HX-Request")
        else "training/index.html"
    )
    return render(
        request, template, {"overview": overview, "switching": switching, "form": SpeciesForm()}
    )


@_admin_only
@permission_required(MANAGE_SPECIES_PERMISSION, raise_exception=True)
def species_new(request: HttpRequest) -> HttpResponse:
    form = SpeciesForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            species = species_register(
                name=form.cleaned_data["name"],
                sensitive=form.cleaned_data["sensitive"],
                viewpoints=form.cleaned_data["viewpoints"],
            )
        except ServiceError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, f"{species} was added. Import labelled photos next.")
            return redirect("training-species", species_id=species.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "training/species_form.html", {"form": form}, status=status)


def _species_context(species: Species) -> dict:
    """Read-only: the switch after re-embedding is the workers' job, never a page's."""
    setting = species_model_get(species_id=species.pk)
    run_list = list(selectors.training_run_list(species=species)[:20])
    calibration_job = calibration_job_get(species_id=species.pk)
    return {
        "species": species,
        "setting": setting,
        "calibration_job": calibration_job,
        "calibrating": calibration_job is not None and calibration_job.is_pending,
        "reembedding": reembedding_progress(setting=setting),
        "embedding": _backlog(setting),
        "runs": run_list,
        "runs_active": any(r.is_active for r in run_list),
    }


def _backlog(setting: SpeciesModel | None) -> dict | None:
    """Photos still waiting for a vector under the active version (e.g. after an import)."""
    if setting is None:
        return None
    progress = embedding_progress(
        species_id=setting.species_id, version_id=setting.model_version_id
    )
    return progress if progress["done"] + progress["failed"] < progress["total"] else None


@_admin_only
def species_detail(request: HttpRequest, species_id: int) -> HttpResponse:
    species = get_object_or_404(Species, pk=species_id)
    if request.headers.get("HX-Request"):  # the runs table asks for news while a run is active
        return render(request, "training/_run_table.html", _species_context(species))
    return render(
        request,
        "training/species_detail.html",
        {
            **_species_context(species),
            "imports": selectors.dataset_import_list(species=species)[:20],
            "upload_form": DatasetUploadForm(),
            "run_form": TrainingRunForm(),
            "budget": selectors.training_budget_estimate(
                species=species,
                mode=TrainingRun.Mode.WITH_ORIGINAL_DATA,
                engine_mode="",
                hyperparameters=runs.hyperparameters_resolve(engine_mode="", given=None),
            ),
        },
    )


@_admin_only
def species_model_status(request: HttpRequest, species_id: int) -> HttpResponse:
    species = get_object_or_404(Species, pk=species_id)
    return render(request, "training/_model_status.html", _species_context(species))


@_admin_only
@require_POST
def dataset_upload(request: HttpRequest, species_id: int) -> HttpResponse:
    """Keep the file and queue its dry run: answers at once, the import page follows it."""
    species = get_object_or_404(Species, pk=species_id)
    form = DatasetUploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return render(
            request,
            "training/species_detail.html",
            {**_species_context(species), "upload_form": form, "run_form": TrainingRunForm()},
            status=400,
        )
    try:
        job = imports.dataset_import_upload(
            species=species,
            uploaded_file=form.cleaned_data["file"],
            photos_zip=form.cleaned_data["photos"],
            started_by=request.user,
            options={
                k: form.cleaned_data[k]
                for k in ("file_format", "max_individuals", "images_per_individual")
            },
        )
    except ServiceError as error:
        messages.error(request, error.message)
        return redirect("training-species", species_id=species.pk)
    return redirect("training-import-detail", import_id=job.pk)


@_admin_only
def dataset_import_detail(request: HttpRequest, import_id: int) -> HttpResponse:
    """An import's state, live while a worker has it (htmx asks for the status part)."""
    job = get_object_or_404(DatasetImport.objects.select_related("species"), pk=import_id)
    context = {"job": job, "embedding": selectors.dataset_import_embedding_progress(job=job)}
    if request.headers.get("HX-Request"):
        return render(request, "training/_import_status.html", context)
    return render(request, "training/import_detail.html", context)


@_admin_only
@require_POST
def dataset_import_confirm(request: HttpRequest, import_id: int) -> HttpResponse:
    job = get_object_or_404(DatasetImport, pk=import_id)
    try:
        if request.POST.get("discard"):
            imports.dataset_import_discard(job=job)
            messages.info(request, "The upload was discarded.")
        else:
            imports.dataset_import_confirm(job=job)
    except ServiceError as error:
        messages.error(request, error.message)
    return redirect("training-import-detail", import_id=job.pk)


@_admin_only
@require_POST
def run_start(request: HttpRequest, species_id: int) -> HttpResponse:
    species = get_object_or_404(Species, pk=species_id)
    form = TrainingRunForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        busy = runs.training_run_active_exists(species=species)
        try:
            run = runs.training_run_start(
                species=species,
                mode=data["mode"],
                engine_mode=data["engine_mode"] or "",
                hyperparameters={
                    k: data[k] for k in ("epochs", "image_size", "time_budget_minutes") if data[k]
                },
                created_by=request.user,
            )
        except ServiceError as error:
            messages.error(request, error.message)
        else:
            if busy:
                messages.info(request, "Another run of this species is going; this one waits.")
            return redirect("training-run", run_id=run.pk)
    else:
        messages.error(request, "Check the training settings.")
    return redirect("training-species", species_id=species.pk)


@_admin_only
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(selectors.training_run_list(), pk=run_id)
    return render(request, "training/run_detail.html", _run_context(run))


@_admin_only
def run_progress(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(selectors.training_run_list(), pk=run_id)
    response = render(request, "training/_run_progress.html", _run_context(run))
    if not run.is_active and request.headers.get("HX-Request"):
        response["HX-Refresh"] = "true"  # the finished page shows the report
    return response


def _run_context(run: TrainingRun) -> dict:
    return {
        "run": run,
        "chart": selectors.loss_chart(run=run),
        "report": run.report or None,
        "warnings": selectors.promotion_warnings(report=run.report or {}),
        "setting": species_model_get(species_id=run.species_id),
    }


@_admin_only
def run_report_json(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun, pk=run_id)
    response = HttpResponse(json.dumps(run.report, indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="training-run-{run.pk}-report.json"'
    return response


@_admin_only
@require_POST
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun, pk=run_id)
    try:
        runs.training_run_cancel(run=run)
    except ServiceError as error:
        messages.error(request, error.message)
    return redirect("training-run", run_id=run.pk)


@_admin_only
@require_POST
def run_promote(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun.objects.select_related("species"), pk=run_id)
    try:
        promotion.model_promote(run=run, confirmed=request.POST.get("confirm") == "yes")
    except ServiceError as error:
        messages.error(request, error.message)
        return redirect("training-run", run_id=run.pk)
    else:
        messages.success(
            request,
            f"Promoted. {run.species} is being re-embedded; ranking "
            "switches to the new model when every photo is done.",
        )
    return redirect("training-species", species_id=run.species_id)


@_admin_only
@require_POST
def species_rollback(request: HttpRequest, species_id: int) -> HttpResponse:
    species = get_object_or_404(Species, pk=species_id)
    try:
        setting = promotion.model_rollback(species=species)
    except ServiceError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"{species} ranks with {setting.model_version} again.")
    return redirect("training-species", species_id=species.pk)
