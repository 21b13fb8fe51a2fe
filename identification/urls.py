from django.urls import path

from identification import api, sighting_views, views

urlpatterns = [
    # Volunteers' sightings
    path("sightings/new/", sighting_views.sighting_create, name="sighting-create"),
    path("sightings/mine/", sighting_views.my_sightings, name="my-sightings"),
    path("sightings/<int:encounter_id>/", sighting_views.sighting_detail, name="sighting-detail"),
    path("api/sightings/", api.SightingListCreateApi.as_view(), name="api-sightings"),
    # Experts and admins
    path("dashboard/", views.dashboard, name="dashboard"),
    # Review
    path("review/", views.review_queue, name="review-queue"),
    path("review/<int:annotation_id>/", views.review_annotation, name="review-annotation"),
    path("review/<int:annotation_id>/act/", views.review_act, name="review-act"),
    path(
        "review/<int:annotation_id>/individuals/",
        views.review_individual_search,
        name="review-individual-search",
    ),
    path("review/photos/<int:annotation_id>/split/", views.review_photo_split, name="photo-split"),
    path("review/photos/<int:annotation_id>/join/", views.review_photo_join, name="photo-join"),
    path("review/photos/<int:annotation_id>/edit/", views.review_photo_edit, name="photo-edit"),
    path(
        "review/decisions/<int:decision_id>/revert/", views.decision_revert, name="decision-revert"
    ),
    path(
        "review/candidates/<int:candidate_id>/photos/",
        views.candidate_photos,
        name="candidate-photos",
    ),
    path(
        "review/candidates/<int:candidate_id>/matches.jpg",
        views.correspondences_image,
        name="candidate-correspondences",
    ),
    path("individuals/merge/", views.individual_merge, name="individual-merge"),
    path("individuals/merges/<int:merge_id>/revert/", views.merge_revert, name="merge-revert"),
    path(
        "api/annotations/<int:annotation_id>/candidates/",
        api.CandidateListApi.as_view(),
        name="api-candidates",
    ),
    path(
        "api/annotations/<int:annotation_id>/decision/",
        api.DecisionCreateApi.as_view(),
        name="api-decision",
    ),
    path("api/annotations/<int:annotation_id>/vote/", api.VoteCreateApi.as_view(), name="api-vote"),
    path("api/individuals/", api.IndividualListApi.as_view(), name="api-individuals"),
    path(
        "api/individuals/<int:individual_id>/annotations/",
        api.IndividualAnnotationListApi.as_view(),
        name="api-individual-annotations",
    ),
]
