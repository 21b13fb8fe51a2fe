from __future__ import annotations

from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalogue.models import Annotation
from catalogue.roles import UPLOAD_PERMISSION, VOTE_PERMISSION
from catalogue.selectors import (
    public_annotation_queryset,
    public_individual_get,
    public_individual_queryset,
    sighting_list_for_user,
)
from catalogue.serializers import SightingSerializer, SightingUploadSerializer
from catalogue.services.sightings import uploaded_photo_from_file
from identification.selectors import review as selectors
from identification.serializers import (
    DecisionInputSerializer,
    DecisionSerializer,
    IdentificationSerializer,
    IndividualPhotoSerializer,
    IndividualSerializer,
    VoteInputSerializer,
)
from identification.services import decisions
from identification.services.pipeline import sighting_submit


class CanUpload(permissions.BasePermission):
    message = "Only volunteers, experts and admins may report sightings."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return request.user.has_perm(UPLOAD_PERMISSION)


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
        queryset = public_individual_queryset()
        if self.request.query_params.get("species"):
            queryset = queryset.filter(species__slug=self.request.query_params["species"])
        if self.request.query_params.get("q"):
            q = self.request.query_params["q"]
            queryset = queryset.filter(Q(code__icontains=q) | Q(name__icontains=q))
        return queryset.select_related("species")


class IndividualAnnotationListApi(generics.ListAPIView):
    """The public photos of a public individual."""

    serializer_class = IndividualPhotoSerializer
    permission_classes = [permissions.AllowAny]

    def get_queryset(self):  # noqa: ANN201
        individual = public_individual_get(individual_id=self.kwargs["individual_id"])
        if individual is None:
            raise Http404("No public individual has this number.")
        return public_annotation_queryset().filter(individual=individual).select_related("image")


class SightingListCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]
    permission_classes = [permissions.IsAuthenticated, CanUpload]

    @extend_schema(responses=SightingSerializer(many=True))
    def get(self, request: Request) -> Response:
        sightings = sighting_list_for_user(user=request.user)
        return Response(SightingSerializer(sightings, many=True, context={"request": request}).data)

    @extend_schema(request=SightingUploadSerializer, responses={201: SightingSerializer})
    def post(self, request: Request) -> Response:
        serializer = SightingUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        boxes = data["bboxes"]
        photos = [
            uploaded_photo_from_file(file=file, bbox=boxes[i] if i < len(boxes) else None)
            for i, file in enumerate(data["photos"])
        ]
        result = sighting_submit(
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
