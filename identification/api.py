from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalogue.models import Annotation, Individual
from catalogue.roles import VOTE_PERMISSION
from identification import selectors
from identification.serializers import (
    DecisionInputSerializer,
    DecisionSerializer,
    IdentificationSerializer,
    IndividualPhotoSerializer,
    IndividualSerializer,
    VoteInputSerializer,
)
from identification.services import decisions


class CanReview(permissions.BasePermission):
    message = "Sign in as a volunteer, expert or admin to see and vote on candidates."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.user.has_perm(VOTE_PERMISSION)


class CandidateListApi(APIView):
    permission_classes = [permissions.IsAuthenticated, CanReview]

    @extend_schema(responses=IdentificationSerializer)
    def get(self, request: Request, annotation_id: int) -> Response:
        identification = selectors.candidate_list(annotation_id=annotation_id)
        if identification is None:
            return Response({"detail": "This animal is not being identified."}, status=404)
        return Response(IdentificationSerializer(identification).data)


class DecisionCreateApi(APIView):
    permission_classes = [permissions.IsAuthenticated, CanReview]

    @extend_schema(request=DecisionInputSerializer, responses={201: DecisionSerializer})
    def post(self, request: Request, annotation_id: int) -> Response:
        serializer = DecisionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        decision = decisions.match_decide(
            annotation=get_object_or_404(Annotation, pk=annotation_id),
            verdict=data["verdict"],
            decided_by=request.user,
            individual=data.get("individual"),
            expected_individual_id=data.get("expected_individual"),
            new_code=data["code"],
            new_name=data["name"],
        )
        return Response(DecisionSerializer(decision).data, status=status.HTTP_201_CREATED)


class VoteCreateApi(APIView):
    permission_classes = [permissions.IsAuthenticated, CanReview]

    @extend_schema(request=VoteInputSerializer, responses={201: None})
    def post(self, request: Request, annotation_id: int) -> Response:
        serializer = VoteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        vote = decisions.vote_cast(
            annotation=get_object_or_404(Annotation, pk=annotation_id),
            individual=serializer.validated_data["individual"],
            voter=request.user,
            same=serializer.validated_data["same"],
        )
        return Response({"id": vote.pk, "same": vote.same}, status=status.HTTP_201_CREATED)


class IndividualListApi(generics.ListAPIView):
    """Public individuals, searchable by ``?species=slug`` and ``?q=code or name``."""

    serializer_class = IndividualSerializer
    permission_classes = [permissions.AllowAny]

    def get_queryset(self):  # noqa: ANN201
        queryset = Individual.objects.filter(is_public=True, merged_into__isnull=True)
        if self.request.query_params.get("species"):
            queryset = queryset.filter(species__slug=self.request.query_params["species"])
        if self.request.query_params.get("q"):
            from django.db.models import Q

            q = self.request.query_params["q"]
            queryset = queryset.filter(Q(code__icontains=q) | Q(name__icontains=q))
        return queryset.select_related("species")


class IndividualAnnotationListApi(generics.ListAPIView):
    """Confirmed photos of a public individual."""

    serializer_class = IndividualPhotoSerializer
    permission_classes = [permissions.AllowAny]

    def get_queryset(self):  # noqa: ANN201
        individual = get_object_or_404(Individual, pk=self.kwargs["individual_id"], is_public=True)
        return individual.annotations.select_related("image")
