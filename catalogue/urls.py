from django.urls import path

from catalogue import api, public_views, views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/signup/", views.signup, name="signup"),
    path("photos/exif/", views.photo_exif, name="photo-exif"),
    path("api/species/", api.SpeciesListApi.as_view(), name="api-species"),
    # Public site
    path("species/", public_views.species_list, name="species-list"),
    path("species/<slug:slug>/", public_views.species_detail, name="species-detail"),
    path(
        "individuals/<int:individual_id>/", public_views.individual_detail, name="individual-detail"
    ),
    path("search/", public_views.search, name="search"),
    path("recent/", public_views.recent_sightings, name="recent-sightings"),
    path(
        "api/public/individuals/<int:individual_id>/",
        api.PublicIndividualApi.as_view(),
        name="api-public-individual",
    ),
    path("api/public/recent/", api.PublicRecentSightingsApi.as_view(), name="api-public-recent"),
    # Experts and admins
    path("exports/", public_views.export_index, name="exports"),
    path("exports/sightings.csv", public_views.export_encounters, name="export-encounters"),
    path(
        "exports/capture-history/",
        public_views.export_capture_history,
        name="export-capture-history",
    ),
    path(
        "exports/public/sightings.csv",
        public_views.export_public_encounters,
        name="export-public-encounters",
    ),
]
