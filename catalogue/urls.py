from django.urls import path

from catalogue import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/signup/", views.signup, name="signup"),
    path("sightings/new/", views.sighting_create, name="sighting-create"),
    path("sightings/mine/", views.my_sightings, name="my-sightings"),
    path("sightings/<int:encounter_id>/", views.sighting_detail, name="sighting-detail"),
    path("photos/exif/", views.photo_exif, name="photo-exif"),
    path("api/species/", api.SpeciesListApi.as_view(), name="api-species"),
    path("api/sightings/", api.SightingListCreateApi.as_view(), name="api-sightings"),
]
