from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalogue import selectors
from catalogue.roles import UPLOAD_PERMISSION
from catalogue.serializers import (
    PublicIndividualSerializer,
    PublicSightingSerializer,
    SightingSerializer,
    SightingUploadSerializer,
    SpeciesSerializer,
)
from catalogue.services import sightings


class CanUpload(permissions.BasePermission):
    message = "Only volunteers, experts and admins may report sightings."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.user.has_perm(UPLOAD_PERMISSION)


class SpeciesListApi(generics.ListAPIView):
    serializer_class = SpeciesSerializer
    permission_classes = [permissions.AllowAny]

    def get_queryset(self):  # noqa: ANN201
        return selectors.species_list()


class SightingListCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [permissions.IsAuthenticated, CanUpload]

    @extend_schema(responses=SightingSerializer(many=True))
    def get(self, request: Request) -> Response:
        sightings = selectors.sighting_list_for_user(user=request.user)
        return Response(SightingSerializer(sightings, many=True, context={"request": request}).data)

    @extend_schema(request=SightingUploadSerializer, responses={201: SightingSerializer})
    def post(self, request: Request) -> Response:
        serializer = SightingUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        boxes = data["bboxes"]
        photos = [
            sightings.uploaded_photo_from_file(file=file, bbox=boxes[i] if i < len(boxes) else None)
            for i, file in enumerate(data["photos"])
        ]
        result = sightings.sighting_create(
            submitted_by=request.user,
            species=data["species"],
            photos=photos,
            observed_at=data.get("observed_at"),
            latitude=data.get("latitude"),
            longitude=data.get("longitude"),
            notes=data["notes"],
            viewpoint=data["viewpoint"],
        )
        body = {
            "sighting": (
                SightingSerializer(result.encounter, context={"request": request}).data
                if result.encounter
                else None
            ),
            # Someone else's photo is reported without its sighting or filename.
            "duplicates": [
                {"filename": duplicate.filename, "sighting": duplicate.sighting_id}
                for duplicate in result.duplicates
            ],
            "messages": result.messages,
        }
        created = result.encounter is not None
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class PublicIndividualApi(APIView):
    """A public individual's confirmed sightings; sensitive places coarsened for the public."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(responses=PublicIndividualSerializer)
    def get(self, request: Request, individual_id: int) -> Response:
        individual = selectors.public_individual_get(individual_id=individual_id)
        if individual is None:
            raise Http404("No public individual has this number.")
        history = selectors.individual_life_history(individual=individual, user=request.user)
        return Response(PublicIndividualSerializer(history, context={"request": request}).data)


class PublicRecentSightingsApi(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses=PublicSightingSerializer(many=True))
    def get(self, request: Request) -> Response:
        sightings = selectors.public_recent_sightings(user=request.user, limit=30)
        return Response(
            PublicSightingSerializer(sightings, many=True, context={"request": request}).data
        )
