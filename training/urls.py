from django.urls import path

from training import api, views

urlpatterns = [
    path("", views.species_index, name="training-index"),
    path("species/new/", views.species_new, name="training-species-new"),
    path("species/<int:species_id>/", views.species_detail, name="training-species"),
    path(
        "species/<int:species_id>/model/", views.species_model_status, name="training-species-model"
    ),
    path("species/<int:species_id>/import/", views.dataset_upload, name="training-import"),
    path("imports/<int:import_id>/", views.dataset_import_detail, name="training-import-detail"),
    path(
        "imports/<int:import_id>/confirm/",
        views.dataset_import_confirm,
        name="training-import-confirm",
    ),
    path("species/<int:species_id>/runs/", views.run_start, name="training-run-start"),
    path("species/<int:species_id>/rollback/", views.species_rollback, name="training-rollback"),
    path("runs/<int:run_id>/", views.run_detail, name="training-run"),
    path("runs/<int:run_id>/progress/", views.run_progress, name="training-run-progress"),
    path("runs/<int:run_id>/report.json", views.run_report_json, name="training-run-report"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="training-run-cancel"),
    path("runs/<int:run_id>/promote/", views.run_promote, name="training-run-promote"),
    path("api/species/", api.SpeciesCreateApi.as_view(), name="api-training-species"),
    path(
        "api/species/<int:species_id>/imports/",
        api.DatasetImportApi.as_view(),
        name="api-training-import",
    ),
    path(
        "api/imports/<int:import_id>/",
        api.DatasetImportDetailApi.as_view(),
        name="api-training-import-detail",
    ),
    path(
        "api/species/<int:species_id>/runs/",
        api.TrainingRunListCreateApi.as_view(),
        name="api-training-runs",
    ),
    path("api/runs/<int:run_id>/", api.TrainingRunApi.as_view(), name="api-training-run"),
    path(
        "api/runs/<int:run_id>/<str:action>/",
        api.TrainingRunActionApi.as_view(),
        name="api-training-run-action",
    ),
]
