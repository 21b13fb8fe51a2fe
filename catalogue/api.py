from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalogue import selectors
from catalogue.serializers import (
    PublicIndividualSerializer,
    PublicSightingSerializer,
    SpeciesSerializer,
)


class SpeciesListApi(generics.ListAPIView):
    serializer_class = SpeciesSerializer
    permission_classes = [permissions.AllowAny]

    def get_queryset(self):  # noqa: ANN201
        return selectors.species_list()


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
